"""Entry point of the desktop app (``python app.py``, ``murid-app``).

    python app.py [--project DIR] [--view start|train|review|results|errors|predict] [--theme dark|light]
                  [--screenshot FILE] [--size WxH]

``--screenshot FILE`` renders the chosen view offscreen to a PNG and exits. Settings (recent
projects, theme) are kept by QSettings; ``MURID_SETTINGS=FILE`` keeps them in that INI file
instead (tests, screenshots, benchmarks).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="murid-app", description="MURID Studio desktop app")
    p.add_argument("--project", type=Path, metavar="DIR", help="open this project folder")
    p.add_argument("--view", choices=("start", "train", "review", "results", "errors", "predict"), default=None,
                   help="the view to show first")
    p.add_argument("--theme", choices=("dark", "light"), default=None, help="colour theme (default: dark)")
    p.add_argument("--screenshot", type=Path, metavar="FILE",
                   help="render the view offscreen to this PNG and exit")
    p.add_argument("--size", default="1280x800", metavar="WxH", help="window size for --screenshot")
    p.add_argument("--train-seconds", type=float, default=0.0, metavar="S",
                   help="with --screenshot: train the project for S seconds first, grab the "
                        "window mid-run, then stop (a checkpoint is saved)")
    return p.parse_args(argv)


def make_app(argv: list[str] | None = None):
    """The QApplication (created once), with pyqtgraph configured for label maps and the garbage
    collector moved to the GUI thread."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    pg.setConfigOptions(imageAxisOrder="row-major")
    from .gui_gc import collect_on_gui_thread

    app = QApplication.instance() or QApplication(["murid-app", *(argv or [])])
    app.setApplicationName("MURID Studio")
    app.setOrganizationName("MURID")
    collect_on_gui_thread()  # never on the worker or reader thread (gui_gc says why)
    return app


def _train_for(app, window, seconds: float) -> None:
    import time

    while not window.runner.preloaded:
        app.processEvents()
        time.sleep(0.005)
    window.show_view("train")
    window.start_training()
    end = time.monotonic() + seconds
    while time.monotonic() < end and window.runner.busy:
        app.processEvents()
        time.sleep(0.005)


def app_settings():
    """The app's QSettings: the user's, or the INI file named by $MURID_SETTINGS."""
    from PySide6.QtCore import QSettings

    path = os.environ.get("MURID_SETTINGS")
    return QSettings(path, QSettings.IniFormat) if path else QSettings("MURID", "MURID Studio")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.screenshot is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from .platform_check import platform_problem

    problem = platform_problem()  # Qt would abort the process, saying nothing useful
    if problem is not None:
        print(f"murid-app: error: {problem}", file=sys.stderr)
        return 2
    app = make_app()
    from .main_window import MainWindow
    from .theme import apply_theme

    settings = app_settings()
    theme = args.theme or str(settings.value("theme", "dark"))
    apply_theme(app, theme)  # before the plots are made: pyqtgraph reads its colours at creation
    window = MainWindow(settings)
    if args.project is not None and not window.open_project(args.project):
        print(f"murid-app: {window.last_error}", file=sys.stderr)
        if args.screenshot is not None:
            window.runner.shutdown()
            return 2
    if args.view:
        window.show_view(args.view)
    if args.screenshot is not None:
        from .screenshot import save_screenshot

        w, h = (int(v) for v in args.size.lower().split("x"))
        if args.train_seconds > 0 and window.project is not None:
            _train_for(app, window, args.train_seconds)
        for _ in range(3):  # reads off the GUI thread; a result may start another (index, then image)
            for reader in (window.train_view.reader, window.errors_view.reader):
                reader.wait_idle()
            app.processEvents()
        save_screenshot(window, args.screenshot, (w, h))
        if window.runner.busy:
            window.runner.stop()
            while window.runner.busy:
                app.processEvents()
        window.runner.shutdown()
        print(f"screenshot written to {args.screenshot}")
        return 0
    window.show()
    return app.exec()
