"""The Gemini API key: lookup order, OS keyring storage (an in-memory backend stands in for it),
missing/broken keyrings, and redaction."""

from __future__ import annotations

import logging

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from aiflat_gui.ai import keys


class MemoryKeyring(KeyringBackend):
    priority = 1

    def __init__(self):
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        from keyring.errors import PasswordDeleteError

        if (service, username) not in self.store:
            raise PasswordDeleteError("not found")
        del self.store[(service, username)]


class BrokenKeyring(KeyringBackend):
    """A backend that exists but fails (a locked Secret Service, no D-Bus...)."""

    priority = 1

    def get_password(self, service, username):
        raise keyring.errors.KeyringError("org.freedesktop.DBus.Error.ServiceUnknown")

    def set_password(self, service, username, password):
        raise keyring.errors.PasswordSetError("locked")

    def delete_password(self, service, username):
        raise keyring.errors.PasswordDeleteError("locked")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def memory():
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    return kr


def test_lookup_order(monkeypatch, memory):
    assert keys.get_api_key() is None
    assert keys.key_source() is None
    assert keys.set_api_key("from-keyring") is True
    assert memory.store[("aiflat", "gemini-api-key")] == "from-keyring"
    assert keys.get_api_key() == "from-keyring" and keys.key_source() == "keyring"
    monkeypatch.setenv("GEMINI_API_KEY", "from-gemini-env")
    assert keys.get_api_key() == "from-gemini-env" and keys.key_source() == "GEMINI_API_KEY"
    monkeypatch.setenv("GOOGLE_API_KEY", "from-google-env")
    assert keys.get_api_key() == "from-google-env" and keys.key_source() == "GOOGLE_API_KEY"
    assert keys.get_api_key("explicit") == "explicit" and keys.key_source("explicit") == "explicit"


def test_blank_values_do_not_count(monkeypatch, memory):
    monkeypatch.setenv("GOOGLE_API_KEY", "   ")
    monkeypatch.setenv("GEMINI_API_KEY", " real \n")
    assert keys.get_api_key("") == "real"
    assert keys.set_api_key("  ") is False and memory.store == {}


def test_delete(memory):
    keys.set_api_key("k1")
    assert keys.delete_api_key() is True
    assert keys.get_api_key() is None
    assert keys.delete_api_key() is False  # nothing left to delete


def test_no_keyring_backend(caplog):
    keyring.set_keyring(fail.Keyring())
    caplog.set_level(logging.DEBUG, logger="aiflat_gui.ai.keys")
    assert keys.keyring_available() is False
    assert keys.get_api_key() is None
    assert keys.set_api_key("k") is False
    assert keys.delete_api_key() is False
    assert all(r.levelno <= logging.DEBUG for r in caplog.records)
    assert "no OS keyring" in caplog.text


def test_broken_keyring_is_silent(caplog):
    keyring.set_keyring(BrokenKeyring())
    caplog.set_level(logging.DEBUG, logger="aiflat_gui.ai.keys")
    assert keys.keyring_available() is True
    assert keys.get_api_key() is None
    assert keys.set_api_key("secret-123") is False
    assert keys.delete_api_key() is False
    assert all(r.levelno <= logging.DEBUG for r in caplog.records)
    assert "secret-123" not in caplog.text


def test_env_key_works_without_keyring(monkeypatch):
    keyring.set_keyring(fail.Keyring())
    monkeypatch.setenv("GEMINI_API_KEY", "env-only")
    assert keys.get_api_key() == "env-only"


def test_redact():
    key = "AIza/se+cret=="
    text = f"400 API key not valid: {key} (url ...?key=AIza%2Fse%2Bcret%3D%3D)"
    out = keys.redact(text, key)
    assert key not in out and "AIza%2Fse%2Bcret%3D%3D" not in out and out.count("***") == 2
    assert keys.redact("nothing here", key) == "nothing here"
    assert keys.redact("x", None) == "x" and keys.redact(ValueError("boom"), "") == "boom"


def test_no_key_message_tells_how_to_fix():
    assert "GEMINI_API_KEY" in keys.NO_KEY_MESSAGE and "Settings" in keys.NO_KEY_MESSAGE
    assert "--provider local" in keys.NO_KEY_MESSAGE and "\n" not in keys.NO_KEY_MESSAGE
