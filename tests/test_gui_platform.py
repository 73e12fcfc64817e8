"""Starting where Qt cannot load its platform plugin: one sentence naming what to install, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from murid_gui import platform_check
from murid_gui.app import main

ROOT = Path(__file__).resolve().parents[1]


def test_debian_package_names():
    assert platform_check.debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"
    assert platform_check.debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert platform_check.debian_package("libX11-xcb.so.1") == "libx11-xcb1"
    assert platform_check.debian_package("libxcb-render-util.so.0") == "libxcb-render-util0"


def test_missing_xcb_cursor_is_named_with_its_install_command(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform_check, "missing_xcb_libraries", lambda: ["libxcb-cursor.so.0"])
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the system library libxcb-cursor.so.0 is missing" in err[0]
    assert "sudo apt install libxcb-cursor0" in err[0] and "dnf install xcb-util-cursor" in err[0]


def test_no_check_where_qt_uses_another_plugin(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform_check, "missing_xcb_libraries", lambda: ["libxcb-cursor.so.0"])
    assert platform_check.platform_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert platform_check.platform_problem(
        {"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}) is None
    assert "DISPLAY is not set" in platform_check.platform_problem({})


@pytest.mark.skipif(not sys.platform.startswith("linux") or not platform_check.missing_xcb_libraries(),
                    reason="this machine has every library the xcb plugin needs")
def test_real_start_without_the_libraries_exits_2_instead_of_aborting():
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":77", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, str(ROOT / "app.py")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "sudo apt install" in lines[0]
    assert all(m in lines[0] for m in platform_check.missing_xcb_libraries())
