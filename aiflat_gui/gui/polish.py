"""The window's chrome, applied once the main window has built its actions, docks and toolbar:
icons, a tooltip naming its shortcut on every action and control, a toolbar whose buttons never
move (icons, fixed size: the Undo label lives in the menu and the tooltip), the mask outline
toggle, the Help menu (quick guide, keyboard shortcuts) and a dock layout that leaves the image
most of the window (Workflow left; Stretch right above Specks and Log, tabbed).

Only widgets and actions: nothing here touches the document.
"""

from __future__ import annotations

from typing import Optional

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

from ..resources import resource_path
from .widgets import std_icon

#: action objectName -> our SVG (resources/icons) or a widgets.std_icon name
ACTION_ICONS = {
    "open": "open", "open_folder": "folder", "export": "export", "settings": "settings",
    "undo": "undo", "redo": "redo", "fit": "fit", "zoom_1to1": "zoom_1to1", "cancel_job": "cancel",
    "overlay": "svg:mask-overlay", "overlay_outline": "svg:mask-outline",
    "tool_pan": "svg:tool-pan", "tool_paint": "svg:tool-paint", "tool_erase": "svg:tool-erase",
    "tool_remove": "svg:tool-remove", "view_dust": "svg:visualize-dust", "guide": "help",
}

#: what each action does, for its tooltip (the shortcut is added from the action)
ACTION_TIPS = {
    "tool_pan": "Pan: drag to move the image (the wheel zooms, right-drag zooms in every tool)",
    "tool_paint": "Paint dust into the mask (drag; [ and ] change the brush)",
    "tool_erase": "Erase from the mask (drag; [ and ] change the brush)",
    "tool_remove": "Remove speck: click a speck to delete it from the mask",
    "overlay": "Show the mask over the image",
    "overlay_outline": "Draw the mask as outlines, so it does not hide the dust it marks",
    "fit": "Fit the whole image in the view",
    "zoom_1to1": "One image pixel per screen pixel",
    "view_dust": "Visualize dust: the reference divided by its smooth version, strongly stretched "
                 "(dust shows as dark rings and spots)",
}

#: workflow button -> the window action whose shortcut it shares
BUTTON_ACTIONS = {"open": "open", "open_folder": "open_folder", "demo": "demo", "import_mask": "import_mask",
                  "grow": "grow", "shrink": "shrink", "invert": "invert", "clear": "clear",
                  "calibrate": "export", "batch": "batch"}


def shortcut_text(action: QtGui.QAction) -> str:
    sc = action.shortcut()
    return "" if sc.isEmpty() else sc.toString(QtGui.QKeySequence.SequenceFormat.NativeText)


def with_shortcut(text: str, action: Optional[QtGui.QAction]) -> str:
    sc = shortcut_text(action) if action is not None else ""
    return f"{text} ({sc})" if sc and f"({sc})" not in text else text


def _plain(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…").rstrip(".")


def icon(window: QtWidgets.QWidget, name: str) -> QtGui.QIcon:
    if name.startswith("svg:"):
        path = resource_path("icons", name[4:] + ".svg")
        return QtGui.QIcon(str(path)) if path.is_file() else QtGui.QIcon()
    return std_icon(window, name)


def _tip_action(action: QtGui.QAction) -> None:
    """Tooltip = what it does + its shortcut; kept up to date when the text changes (Undo …)."""
    base = ACTION_TIPS.get(action.objectName()) or _plain(action.text())
    tip = with_shortcut(base, action)
    if action.toolTip() != tip:
        action.setToolTip(tip)
        action.setStatusTip(base)


def window_actions(window: QtWidgets.QMainWindow) -> dict[str, QtGui.QAction]:
    return {a.objectName(): a for a in window.findChildren(QtGui.QAction) if a.objectName()}


def polish(window) -> None:
    """Apply the chrome to a freshly built :class:`~aiflat_gui.gui.main_window.MainWindow`."""
    add_outline_action(window)
    add_help_menu(window)
    actions = window_actions(window)
    for name, a in actions.items():
        if name in ACTION_ICONS:
            a.setIcon(icon(window, ACTION_ICONS[name]))
        _tip_action(a)
        a.changed.connect(lambda a=a: _tip_action(a))
    fix_toolbar(window)
    tip_workflow(window, actions)
    status_bar(window)
    if not getattr(window, "_layout_restored", False):
        arrange_docks(window)


def add_outline_action(window) -> None:
    """View ▸ Mask outline (Shift+O): contours instead of a filled overlay."""
    a = QtGui.QAction("Mask o&utline", window)
    a.setObjectName("overlay_outline")
    a.setCheckable(True)
    a.setShortcut(QtGui.QKeySequence("Shift+O"))
    a.setChecked(bool(window.settings.value("editor/outline", False, type=bool)))
    window.viewer.set_overlay_outline(a.isChecked())

    def toggled(on: bool) -> None:
        window.viewer.set_overlay_outline(on)
        window.settings.setValue("editor/outline", bool(on))

    a.toggled.connect(toggled)
    window.addAction(a)
    window.act_outline = a
    view_menu = _menu(window, "&View")
    if view_menu is not None:
        view_menu.insertAction(_after(view_menu, window.act_overlay), a)


def _menu(window, title: str) -> Optional[QtWidgets.QMenu]:
    for a in window.menuBar().actions():
        if a.menu() is not None and a.text() == title:
            return a.menu()
    return None


def _after(menu: QtWidgets.QMenu, action: QtGui.QAction) -> Optional[QtGui.QAction]:
    acts = menu.actions()
    i = acts.index(action) if action in acts else -1
    return acts[i + 1] if 0 <= i < len(acts) - 1 else None


def add_help_menu(window) -> None:
    """Help ▸ Quick guide (F1), Keyboard shortcuts (Ctrl+/), then About."""
    from .help_dialog import show_guide, show_shortcuts

    menu = _menu(window, "&Help")
    if menu is None:
        menu = window.menuBar().addMenu("&Help")
    first = menu.actions()[0] if menu.actions() else None
    for text, name, sc, slot in (("Quick &guide", "guide", "F1", lambda: show_guide(window)),
                                 ("&Keyboard shortcuts", "shortcuts", "Ctrl+/", lambda: show_shortcuts(window))):
        a = QtGui.QAction(text, window)
        a.setObjectName(name)
        a.setShortcut(QtGui.QKeySequence(sc))
        a.triggered.connect(lambda checked=False, slot=slot: slot())
        window.addAction(a)
        menu.insertAction(first, a)
    if first is not None:
        menu.insertSeparator(first)


def fix_toolbar(window) -> None:
    """Icon-only buttons of one size: a changing action text (Undo Paint stroke) never moves the
    buttons after it. The outline toggle sits next to the overlay toggle."""
    tb = window.findChild(QtWidgets.QToolBar, "toolbar_tools")
    if tb is None:
        return
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
    tb.setIconSize(QtCore.QSize(20, 20))
    acts = tb.actions()
    if window.act_overlay in acts and window.act_outline not in acts:
        i = acts.index(window.act_overlay)
        tb.insertAction(acts[i + 1] if i + 1 < len(acts) else None, window.act_outline)
    for a in tb.actions():
        w = tb.widgetForAction(a)
        if isinstance(w, QtWidgets.QToolButton):
            if a.icon().isNull():  # no icon: a fixed-width text button
                w.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
                w.setFixedWidth(w.fontMetrics().horizontalAdvance(_plain(a.text())) + 14)
            else:
                w.setFixedSize(30, 28)
    for w in tb.findChildren(QtWidgets.QWidget):
        if isinstance(w, (QtWidgets.QSpinBox, QtWidgets.QSlider)) and not w.toolTip():
            w.setToolTip({"brushSize": "Brush radius in image pixels ([ smaller, ] larger)",
                          "overlayOpacity": "Mask overlay opacity"}.get(w.objectName(), ""))
    if window.brush_spin.toolTip() == "":
        window.brush_spin.setToolTip("Brush radius in image pixels ([ smaller, ] larger)")


def tip_workflow(window, actions: dict[str, QtGui.QAction]) -> None:
    """Workflow buttons that do what a menu action does name its shortcut in their tooltip."""
    for name, button in window.workflow.buttons.items():
        base = button.toolTip() or _plain(button.text())
        button.setToolTip(with_shortcut(base, actions.get(BUTTON_ACTIONS.get(name, ""))))
    play = getattr(window, "play_button", None)
    if play is not None:
        play.setToolTip(with_shortcut("Play / pause", actions.get("play")))
    slider = getattr(window, "frame_slider", None)
    if slider is not None and not slider.toolTip():
        slider.setToolTip("Frame of the video (drag, or click and use the arrow keys)")
    combo = getattr(window, "view_combo", None)
    if combo is not None:
        combo.setToolTip("What the viewer shows (keys 1–9 switch views)")
        for i in range(combo.count()):
            a = actions.get(f"view_{combo.itemData(i)}")
            if a is not None:
                combo.setItemData(i, with_shortcut(ACTION_TIPS.get(a.objectName(), combo.itemText(i)), a),
                                  Qt.ItemDataRole.ToolTipRole)
    cancel = getattr(window.job_panel, "cancel_button", None)
    if cancel is not None:
        cancel.setToolTip(with_shortcut("Cancel the running job", actions.get("cancel_job")))


def status_bar(window) -> None:
    """The pixel readout keeps one width whatever it reads (a long value never shifts the bar)."""
    label = getattr(window, "pixel_label", None)
    if label is not None:
        label.setMinimumWidth(0)
        label.setFixedWidth(label.fontMetrics().horizontalAdvance("x 0000  y 0000   value 65535 65535 65535   "
                                                                  "mask 1   flat 0.0000"))
        label.setToolTip("Pixel under the cursor: position, raw value(s), mask, flat")


#: screens narrower than this get the compact layout (every dock tabbed on the left)
WIDE_SCREEN = 1500


def is_wide(window) -> bool:
    screen = window.screen() or QtGui.QGuiApplication.primaryScreen()
    return screen is not None and screen.availableGeometry().width() >= WIDE_SCREEN


def arrange_docks(window, wide: Optional[bool] = None) -> None:
    """The default layout, leaving the image most of the window. Wide screens: Workflow on the
    left, Stretch on the right above Specks and Log (tabbed). Narrower screens (a 1366×768
    laptop): Workflow, Stretch, Specks and Log tabbed in one column on the left."""
    wide = is_wide(window) if wide is None else bool(wide)
    docks = (window.workflow_dock, window.stretch_dock, window.speck_dock, window.log_dock)
    for d in docks:  # start from nothing: no tab bar of an earlier arrangement survives
        window.removeDockWidget(d)
    for d in docks:
        d.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable
                      | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                      | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        d.setFloating(False)
        d.show()
    window.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas, QtWidgets.QTabWidget.TabPosition.North)
    left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
    window.addDockWidget(left, window.workflow_dock)
    if wide:
        window.addDockWidget(right, window.stretch_dock)
        window.addDockWidget(right, window.speck_dock)
        window.splitDockWidget(window.stretch_dock, window.speck_dock, Qt.Orientation.Vertical)
        window.addDockWidget(right, window.log_dock)
        window.tabifyDockWidget(window.speck_dock, window.log_dock)
        window.speck_dock.raise_()
    else:
        for d in docks[1:]:
            window.addDockWidget(left, d)
            window.tabifyDockWidget(window.workflow_dock, d)
        window.workflow_dock.raise_()
    window._wide_layout = wide


def default_dock_sizes(window) -> None:
    """Workflow as wide as its content needs (at most 24 % of the window), the right column (wide
    layout) 380 px at most 24 % (the Specks table's widest rows fit it), the Stretch dock about
    40 % of the height."""
    w, h = max(window.width(), 1), max(window.height(), 1)
    need = window.workflow.minimumSizeHint().width() + window.workflow_scroll.verticalScrollBar().sizeHint().width() + 6
    left = int(min(need, 0.24 * w))
    if getattr(window, "_wide_layout", True) and window.dockWidgetArea(window.stretch_dock) != \
            window.dockWidgetArea(window.workflow_dock):
        right = int(min(380, 0.24 * w))
        window.resizeDocks([window.workflow_dock, window.stretch_dock], [left, right], Qt.Orientation.Horizontal)
        window.resizeDocks([window.stretch_dock], [int(0.40 * h)], Qt.Orientation.Vertical)
    else:
        window.resizeDocks([window.workflow_dock], [left], Qt.Orientation.Horizontal)
