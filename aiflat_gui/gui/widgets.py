"""Small widget helpers shared by the panels: a wheel guard for value controls in scrolling panels,
an eliding label whose size never follows its text, and a standard-icon lookup.
"""

from __future__ import annotations

from typing import Optional

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

#: the controls whose value the mouse wheel changes
VALUE_CONTROLS = (QtWidgets.QAbstractSpinBox, QtWidgets.QAbstractSlider, QtWidgets.QComboBox)


class WheelGuard(QtCore.QObject):
    """Event filter: a wheel over a value control that does not have the keyboard focus goes to the
    scroll area around it (the panel scrolls) instead of changing the value. Click the control (or tab
    to it) and the wheel edits it as usual."""

    def eventFilter(self, obj, event) -> bool:  # noqa: D401 - Qt override
        if event.type() != QtCore.QEvent.Type.Wheel or not isinstance(obj, QtWidgets.QWidget) or obj.hasFocus():
            return False
        area = obj.parentWidget()
        while area is not None and not isinstance(area, QtWidgets.QAbstractScrollArea):
            area = area.parentWidget()
        if area is None:
            event.ignore()  # ignored + filtered: QApplication offers a real wheel to the parents
            return True
        # hand the wheel to the scroll area that holds the control (Qt would not propagate a
        # synthesized event, and a control in a nested panel may have no other way up)
        viewport = area.viewport()
        pos = QtCore.QPointF(viewport.mapFromGlobal(event.globalPosition().toPoint()))
        forwarded = QtGui.QWheelEvent(pos, event.globalPosition(), event.pixelDelta(), event.angleDelta(),
                                      event.buttons(), event.modifiers(), event.phase(), event.inverted())
        QtWidgets.QApplication.sendEvent(viewport, forwarded)
        return True


def guard_wheel(root: QtWidgets.QWidget) -> WheelGuard:
    """Install one :class:`WheelGuard` on every spin box, slider and combo box under ``root`` and
    give them ``StrongFocus`` (the wheel alone no longer focuses them). Returns the guard (owned by
    ``root``); call again after adding controls."""
    guard = root.findChild(WheelGuard, "wheelGuard")
    if guard is None:
        guard = WheelGuard(root)
        guard.setObjectName("wheelGuard")
    for w in root.findChildren(QtWidgets.QWidget):
        if isinstance(w, VALUE_CONTROLS) and not w.property("_wheel_guarded"):
            w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            w.installEventFilter(guard)
            w.setProperty("_wheel_guarded", True)
    return guard


class ElidedLabel(QtWidgets.QLabel):
    """A one-line label that shows as much of its text as fits, with "…" (the full text in the
    tooltip). Its size hint does not depend on the text: a long message never widens a bar."""

    def __init__(self, text: str = "", parent: Optional[QtWidgets.QWidget] = None, min_chars: int = 10):
        super().__init__(parent)
        self._full = ""
        self._min_chars = min_chars
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt naming
        self._full = str(text or "")
        self.setToolTip(self._full if len(self._full) > self._min_chars else "")
        self._elide()

    def fullText(self) -> str:  # noqa: N802
        return self._full

    def _elide(self) -> None:
        fm = self.fontMetrics()
        one_line = " ".join(self._full.split())
        super().setText(fm.elidedText(one_line, Qt.TextElideMode.ElideRight, max(self.width(), 1)))

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def sizeHint(self) -> QtCore.QSize:
        fm = self.fontMetrics()
        return QtCore.QSize(fm.horizontalAdvance("M") * self._min_chars, super().sizeHint().height())

    def minimumSizeHint(self) -> QtCore.QSize:
        fm = self.fontMetrics()
        return QtCore.QSize(fm.horizontalAdvance("M") * 3, super().minimumSizeHint().height())


def std_icon(widget: QtWidgets.QWidget, name: str) -> QtGui.QIcon:
    """A theme icon (freedesktop name) when the platform has one, else Qt's standard pixmap of the
    same meaning, else an empty icon."""
    theme, fallback = _ICONS.get(name, (name, None))
    icon = QtGui.QIcon.fromTheme(theme)
    if icon.isNull() and fallback is not None:
        icon = widget.style().standardIcon(getattr(QtWidgets.QStyle.StandardPixmap, fallback))
    return icon


#: our name -> (freedesktop theme name, QStyle standard pixmap fallback)
_ICONS = {
    "open": ("document-open", "SP_DialogOpenButton"),
    "folder": ("folder-open", "SP_DirOpenIcon"),
    "save": ("document-save", "SP_DialogSaveButton"),
    "undo": ("edit-undo", "SP_ArrowBack"),
    "redo": ("edit-redo", "SP_ArrowForward"),
    "fit": ("zoom-fit-best", "SP_TitleBarMaxButton"),
    "zoom_1to1": ("zoom-original", "SP_TitleBarNormalButton"),
    "help": ("help-contents", "SP_DialogHelpButton"),
    "settings": ("preferences-system", "SP_FileDialogDetailedView"),
    "cancel": ("process-stop", "SP_BrowserStop"),
    "export": ("document-save-as", "SP_DialogSaveButton"),
    "overlay": ("view-visible", "SP_DialogYesButton"),
}
