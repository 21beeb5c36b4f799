"""The Gemini API key: where it comes from, where it is stored, and how it is kept out of sight.

Lookup order (:func:`get_api_key`): an explicit key, then the environment (``GOOGLE_API_KEY``, then
``GEMINI_API_KEY``: the same order as the google-genai SDK), then the OS keyring (service ``aiflat``,
user ``gemini-api-key``). A missing or broken keyring backend is not an error: the key is simply
not found there (a debug-level log line says why). The key itself is never logged; every message
that might carry it goes through :func:`redact` first.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

log = logging.getLogger(__name__)

KEYRING_SERVICE = "aiflat"
KEYRING_USER = "gemini-api-key"
ENV_VARS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")

NO_KEY_MESSAGE = ("no Gemini API key: set GEMINI_API_KEY or store one in Settings "
                  "(or use --provider local, offline)")


def _keyring():
    """The keyring module with a usable backend, or None."""
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring):
            log.debug("no OS keyring backend available (%s)", type(backend).__name__)
            return None
        return keyring
    except Exception as exc:  # noqa: BLE001 - any keyring trouble means "no keyring"
        log.debug("keyring unavailable: %s", type(exc).__name__)
        return None


def keyring_available() -> bool:
    """True when an OS keyring backend can store the key."""
    return _keyring() is not None


def _clean(key: Optional[str]) -> Optional[str]:
    if key is None:
        return None
    key = str(key).strip()
    return key or None


def key_source(explicit: Optional[str] = None) -> Optional[str]:
    """Where :func:`get_api_key` would find the key: ``"explicit"``, an env var name, ``"keyring"``
    or None. Never the key itself (the GUI shows this)."""
    if _clean(explicit):
        return "explicit"
    for var in ENV_VARS:
        if _clean(os.environ.get(var)):
            return var
    return "keyring" if _keyring_get() else None


def _keyring_get() -> Optional[str]:
    kr = _keyring()
    if kr is None:
        return None
    try:
        return _clean(kr.get_password(KEYRING_SERVICE, KEYRING_USER))
    except Exception as exc:  # noqa: BLE001 - locked/broken keyrings behave like an empty one
        log.debug("keyring lookup failed: %s", type(exc).__name__)
        return None


def get_api_key(explicit: Optional[str] = None) -> Optional[str]:
    """The key to use, or None: explicit, then ``GOOGLE_API_KEY``, ``GEMINI_API_KEY``, the keyring."""
    key = _clean(explicit)
    if key:
        return key
    for var in ENV_VARS:
        key = _clean(os.environ.get(var))
        if key:
            return key
    return _keyring_get()


def set_api_key(key: str) -> bool:
    """Store ``key`` in the OS keyring. False when there is no usable keyring (the GUI then tells
    the user to use the environment variable instead)."""
    clean = _clean(key)
    kr = _keyring()
    if kr is None or not clean:
        return False
    try:
        kr.set_password(KEYRING_SERVICE, KEYRING_USER, clean)
        return True
    except Exception as exc:  # noqa: BLE001
        log.debug("keyring store failed: %s", type(exc).__name__)
        return False


def delete_api_key() -> bool:
    """Remove the stored key. True if one was removed."""
    kr = _keyring()
    if kr is None:
        return False
    try:
        kr.delete_password(KEYRING_SERVICE, KEYRING_USER)
        return True
    except Exception as exc:  # noqa: BLE001 - nothing stored, or a broken backend
        log.debug("keyring delete failed: %s", type(exc).__name__)
        return False


def redact(text: object, key: Optional[str]) -> str:
    """``text`` with every occurrence of ``key`` (and its URL-quoted form) replaced by ``***``."""
    s = str(text)
    key = _clean(key)
    if not key:
        return s
    from urllib.parse import quote

    for form in {key, quote(key, safe=""), quote(key)}:
        if form:
            s = s.replace(form, "***")
    return s
