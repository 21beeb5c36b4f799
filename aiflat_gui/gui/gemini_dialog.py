""""Ask AI…": what a Gemini request will send and cost, before it is sent; then the model's reply.

:class:`GeminiAskDialog` shows the model, output size, tiles and estimated cost from
``GeminiProvider.describe_request(reference)``, a re-roll option (bypass the cached answer) and
Send / Cancel. After the request the main window calls :meth:`show_reply` with the provider's
report (the model's text, seconds, cost, cache hit).
"""

from __future__ import annotations

from typing import Any, Optional

from PySide6 import QtWidgets


def _fmt_cost(v: Any) -> str:
    try:
        return f"≈ ${float(v):.2f}"
    except (TypeError, ValueError):
        return "unknown"


def describe_lines(desc: Any) -> list[tuple[str, str]]:
    """(label, text) rows from a describe_request() answer (a dict or an object with attributes)."""
    get = (lambda k, d=None: desc.get(k, d)) if isinstance(desc, dict) else (lambda k, d=None: getattr(desc, k, d))
    rows = [("Model", str(get("model", "?")))]
    size = get("output_size") or get("size")
    label = get("image_size")
    if isinstance(size, (tuple, list)) and len(size) == 2:
        size = f"{size[0]} × {size[1]} px"
    if size or label:
        rows.append(("Output size", " ".join(str(v) for v in (label, f"({size})" if size and label else size) if v)))
    tiles = get("tiles")
    if tiles is not None:
        rows.append(("Tiles", str(len(tiles) if isinstance(tiles, (list, tuple)) else tiles)))
    requests = get("requests")
    if requests is not None:
        rows.append(("Requests", str(requests)))
    cost = get("estimated_cost_usd", get("cost_usd", get("cost")))
    rows.append(("Estimated cost", _fmt_cost(cost)))
    cached = get("cached", get("cache_hit"))
    if cached is not None:
        rows.append(("Cached answer", "yes — free, instant" if cached else "no"))
    return rows


class GeminiAskDialog(QtWidgets.QDialog):
    """Confirm a Gemini request. ``exec()`` returns Accepted when the user clicks Send;
    :attr:`reroll` says whether to bypass the cache."""

    def __init__(self, description: Any, parent: Optional[QtWidgets.QWidget] = None, has_key: bool = True,
                 purpose: str = "mask"):
        super().__init__(parent)
        lay = QtWidgets.QVBoxLayout(self)
        if purpose == "clean":
            self.setWindowTitle("Ask the AI for a dust-free image")
            text = ("The reference frame and the mask are sent to Google's image model, which paints the dust "
                    "away. Only the ratio inside the mask is used for the flat: pixels outside it never change.")
        else:
            self.setWindowTitle("Ask the AI to find the dust")
            text = ("The reference frame is sent to Google's image model, which draws a mask of the dust. "
                    "It never changes your pixels: the flat is computed here.")
        intro = QtWidgets.QLabel(text)
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QtWidgets.QFormLayout()
        self.rows = describe_lines(description)
        for label, text in self.rows:
            w = QtWidgets.QLabel(text)
            w.setObjectName(label.lower().replace(" ", "_"))
            form.addRow(label, w)
        lay.addLayout(form)
        self.reroll_box = QtWidgets.QCheckBox("Re-roll: ask again even if an answer is cached (costs again)")
        lay.addWidget(self.reroll_box)
        if not has_key:
            from .settings_dialog import keyring_ok

            where = ("stored in the OS keyring" if keyring_ok() else
                     "kept for this session only: this system has no OS keyring")
            warn = QtWidgets.QLabel(f"No API key is set. Add one in Settings ({where}), or set "
                                    "GEMINI_API_KEY in the environment.")
            warn.setWordWrap(True)
            warn.setStyleSheet("color: #b00;")
            lay.addWidget(warn)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Cancel)
        self.send_button = self.buttons.addButton("Send", QtWidgets.QDialogButtonBox.AcceptRole)
        self.send_button.setEnabled(has_key)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)

    @property
    def reroll(self) -> bool:
        return self.reroll_box.isChecked()

    def summary(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in self.rows)


def reply_text(report: dict) -> str:
    """A readable account of a provider report (never contains a key: reports never do)."""
    lines = []
    text = (report or {}).get("text")
    if text:
        lines.append(f"The model says: {text}")
    if report.get("cache_hit") or report.get("cached"):
        lines.append("Answer from the cache (no cost).")
    secs = report.get("seconds")
    if secs is not None:
        try:
            lines.append(f"Took {float(secs):.1f} s.")
        except (TypeError, ValueError):
            pass
    cost = report.get("cost_usd", report.get("cost"))
    if cost is not None and not report.get("cache_hit"):
        lines.append(f"Cost {_fmt_cost(cost)}.")
    return "\n".join(lines) or "The model returned a mask without comment."


def show_reply(parent: Optional[QtWidgets.QWidget], report: dict) -> None:
    """Show the model's text reply (and cost/time) after a request."""
    QtWidgets.QMessageBox.information(parent, "AI answer", reply_text(report))
