"""Settings: Gemini model, prompt editor, image size, timeout, default output folder, API key.

Everything is stored with QSettings **except the API key**, which goes to the OS keyring through
:mod:`aiflat_gui.ai.keys`. When no keyring backend exists the dialog says so and keeps the key for
this session only (in memory, :func:`session_api_key`); it is never written to QSettings, sessions
or logs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from PySide6 import QtCore, QtWidgets

log = logging.getLogger("aiflat.gui")

DEFAULT_MODELS = ("gemini-3-pro-image", "gemini-3.1-flash-image", "gemini-2.5-flash-image")
IMAGE_SIZES = ("1K", "2K", "4K")
DEFAULTS = {"gemini/model": "gemini-3-pro-image", "gemini/image_size": "1K", "gemini/timeout": 120.0,
            "gemini/prompt": "", "output/folder": "", "output/fsync": False}

_session_key: Optional[str] = None


def session_api_key() -> Optional[str]:
    """A key entered this session when no keyring exists (memory only)."""
    return _session_key


def set_session_api_key(key: Optional[str]) -> None:
    global _session_key
    _session_key = key or None


def models() -> tuple[str, ...]:
    try:
        from ..ai.gemini import MODELS

        found = tuple(MODELS) if not isinstance(MODELS, dict) else tuple(MODELS.keys())
        return found or DEFAULT_MODELS
    except Exception:  # noqa: BLE001 - the list is only a convenience; any id is accepted
        return DEFAULT_MODELS


def default_prompt_file() -> Optional[Path]:
    """The shipped mask prompt in resources/prompts (the first ``*mask*`` text file, else any)."""
    from ..resources import resource_path

    folder = resource_path("prompts")
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".txt", ".md"))
    for p in files:
        if "mask" in p.name.lower():
            return p
    return files[0] if files else None


def default_prompt() -> str:
    p = default_prompt_file()
    try:
        return p.read_text(encoding="utf-8") if p else ""
    except OSError:
        return ""


def get_setting(key: str, settings: Optional[QtCore.QSettings] = None) -> Any:
    s = settings or QtCore.QSettings()
    default = DEFAULTS.get(key)
    v = s.value(key, default)
    if isinstance(default, bool):
        return v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, float):
        try:
            return float(v)
        except (TypeError, ValueError):
            return default
    return v if v is not None else default


#: Whether AIFLAT_FSYNC asked for durable outputs before the app changed anything (it then wins).
_fsync_from_environment: Optional[bool] = None


def apply_output_settings(settings: Optional[QtCore.QSettings] = None) -> None:
    """Make the stored "flush outputs to disk" choice the process default, inherited by batch
    workers (``AIFLAT_FSYNC=1`` in the environment keeps it on whatever the setting says)."""
    global _fsync_from_environment
    from ..io.base import durable_default, set_durable

    if _fsync_from_environment is None:
        _fsync_from_environment = durable_default()
    want = bool(_fsync_from_environment or get_setting("output/fsync", settings))
    if want != durable_default():  # touch the environment only on a change (jobs may be reading it)
        set_durable(want)


def user_prompt(settings: Optional[QtCore.QSettings] = None) -> Optional[str]:
    """The user's edited prompt, or None to use the shipped one."""
    text = get_setting("gemini/prompt", settings)
    return text if text and str(text).strip() else None


def keyring_ok() -> bool:
    try:
        from ..ai.keys import keyring_available

        return bool(keyring_available())
    except Exception:  # noqa: BLE001
        return False


def stored_api_key() -> Optional[str]:
    """The key from the session, else ai.keys (environment / keyring)."""
    if _session_key:
        return _session_key
    try:
        from ..ai.keys import get_api_key

        return get_api_key() or None
    except Exception:  # noqa: BLE001 - no keyring, no key
        return None


def store_api_key(key: str) -> str:
    """Store ``key`` in the keyring, or for this session only. Returns a message for the user."""
    key = key.strip()
    if not key:
        return "No key entered."
    if keyring_ok():
        try:
            from ..ai.keys import set_api_key

            if set_api_key(key):
                set_session_api_key(None)
                return "API key saved in the OS keyring."
        except Exception as exc:  # noqa: BLE001 - fall back to a session key, say why (never the key)
            log.warning("keyring refused the key: %s", type(exc).__name__)
    set_session_api_key(key)
    return ("No OS keyring is available on this system, so the key is kept for this session only "
            "and you will be asked again next time (or set GEMINI_API_KEY in the environment).")


class SettingsDialog(QtWidgets.QDialog):
    def __init__(self, parent: Optional[QtWidgets.QWidget] = None, settings: Optional[QtCore.QSettings] = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings or QtCore.QSettings()
        self.key_message = ""
        lay = QtWidgets.QVBoxLayout(self)
        form = QtWidgets.QFormLayout()
        self.model = QtWidgets.QComboBox()
        self.model.setEditable(True)  # any model id is accepted
        self.model.addItems(models())
        self.model.setCurrentText(str(get_setting("gemini/model", self.settings)))
        self.image_size = QtWidgets.QComboBox()
        self.image_size.addItems(IMAGE_SIZES)
        self.image_size.setCurrentText(str(get_setting("gemini/image_size", self.settings)))
        self.timeout = QtWidgets.QDoubleSpinBox()
        self.timeout.setRange(5, 3600)
        self.timeout.setSuffix(" s")
        self.timeout.setValue(float(get_setting("gemini/timeout", self.settings)))
        self.output_folder = QtWidgets.QLineEdit(str(get_setting("output/folder", self.settings) or ""))
        self.output_folder.setPlaceholderText("beside the input")
        browse = QtWidgets.QPushButton("…")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.output_folder, 1)
        row.addWidget(browse)
        form.addRow("Gemini model", self.model)
        form.addRow("Image size", self.image_size)
        form.addRow("Timeout", self.timeout)
        form.addRow("Default output folder", row)
        self.fsync = QtWidgets.QCheckBox("Flush outputs to disk before finishing")
        self.fsync.setToolTip("Off (default, like cp or Siril): the system writes the file out in the background; "
                              "a cancel, an error or a crash never leaves a partial file either way.\n"
                              "On: the file is on disk before it appears under its name, so it is complete even "
                              "after a power cut -- calibration then runs at the speed of the disk.")
        self.fsync.setChecked(bool(get_setting("output/fsync", self.settings)))
        form.addRow("", self.fsync)

        self.api_key = QtWidgets.QLineEdit()
        self.api_key.setEchoMode(QtWidgets.QLineEdit.Password)
        has = stored_api_key() is not None
        self.api_key.setPlaceholderText("a key is set (type to replace)" if has else "paste your Gemini API key")
        form.addRow("API key", self.api_key)
        self.key_status = QtWidgets.QLabel(
            "A key entered here is stored in the OS keyring." if keyring_ok() else
            "No OS keyring available: a key entered here is kept for this session only.")
        self.key_status.setWordWrap(True)
        form.addRow("", self.key_status)
        lay.addLayout(form)

        lay.addWidget(QtWidgets.QLabel("Prompt sent with the image (edit freely; Reset restores the shipped one):"))
        self.prompt = QtWidgets.QPlainTextEdit()
        self.prompt.setPlainText(user_prompt(self.settings) or default_prompt())
        lay.addWidget(self.prompt, 1)
        reset = QtWidgets.QPushButton("Reset prompt")
        reset.clicked.connect(lambda: self.prompt.setPlainText(default_prompt()))
        bb = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel)
        bb.addButton(reset, QtWidgets.QDialogButtonBox.ResetRole)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        self.resize(560, 520)

    def _browse(self) -> None:
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Default output folder", self.output_folder.text())
        if d:
            self.output_folder.setText(d)

    def save(self) -> None:
        s = self.settings
        s.setValue("gemini/model", self.model.currentText().strip() or DEFAULTS["gemini/model"])
        s.setValue("gemini/image_size", self.image_size.currentText())
        s.setValue("gemini/timeout", float(self.timeout.value()))
        s.setValue("output/folder", self.output_folder.text().strip())
        s.setValue("output/fsync", bool(self.fsync.isChecked()))
        text = self.prompt.toPlainText()
        s.setValue("gemini/prompt", "" if text.strip() == default_prompt().strip() else text)
        s.sync()
        apply_output_settings(s)
        if self.api_key.text().strip():
            self.key_message = store_api_key(self.api_key.text())
            self.api_key.clear()

    def accept(self) -> None:
        self.save()
        super().accept()


def gemini_options(settings: Optional[QtCore.QSettings] = None) -> dict:
    """Keyword arguments for GeminiProvider from the settings (the key included only in memory)."""
    opts = {"model": str(get_setting("gemini/model", settings)),
            "image_size": str(get_setting("gemini/image_size", settings)),
            "timeout": float(get_setting("gemini/timeout", settings))}
    prompt = user_prompt(settings)
    if prompt:
        opts["prompt"] = prompt
    key = stored_api_key()
    if key:
        opts["api_key"] = key
    return opts
