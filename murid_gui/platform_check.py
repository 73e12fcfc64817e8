"""Before Qt starts: can its platform plugin load here? If not, say what to install (no Qt import).

When Qt cannot load its platform plugin it aborts the process (qFatal) with "Could not load the
Qt platform plugin xcb", which Python cannot catch and which does not say what is missing. On
Linux the xcb plugin needs system X libraries that many installs lack (Qt 6.5 and later need
libxcb-cursor0 — the most common PySide6 start-up failure), so the app looks for them first and
names the packages.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# What the xcb plugin links against beyond libxcb itself; checked when `ldd` is not available.
XCB_LIBRARIES = ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-image.so.0", "libxcb-keysyms.so.1",
                 "libxcb-randr.so.0", "libxcb-render-util.so.0", "libxcb-shape.so.0", "libxcb-xkb.so.1",
                 "libxkbcommon-x11.so.0", "libxcb.so.1", "libX11-xcb.so.1")
OTHER_SYSTEMS = ("Fedora: sudo dnf install xcb-util-cursor xcb-util-wm xcb-util-keysyms xcb-util-image "
                 "xcb-util-renderutil libxkbcommon-x11; Arch: sudo pacman -S xcb-util-cursor xcb-util-wm "
                 "xcb-util-keysyms")


def debian_package(soname: str) -> str:
    """libxcb-cursor.so.0 -> libxcb-cursor0, libxkbcommon-x11.so.0 -> libxkbcommon-x11-0."""
    m = re.fullmatch(r"(.+?)\.so\.(\d+)(?:\..*)?", soname)
    if not m:
        return soname
    name, major = m.group(1).lower(), m.group(2)
    return f"{name}{'-' if name[-1].isdigit() else ''}{major}"


def _xcb_plugin_files() -> list[Path]:
    try:
        import PySide6  # the package only: QtCore/QtGui are not loaded
    except ImportError:
        return []
    qt = Path(PySide6.__file__).parent / "Qt"
    files = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))]
    return [f for f in files if f.is_file()]


def missing_xcb_libraries() -> list[str]:
    """The sonames the xcb plugin needs that the dynamic loader cannot find (empty: all there)."""
    files = _xcb_plugin_files()
    if files and shutil.which("ldd"):
        missing: list[str] = []
        for f in files:
            try:
                out = subprocess.run(["ldd", str(f)], capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                break
            for line in out.splitlines():
                name, _, where = line.strip().partition("=>")
                if "not found" in where and name.strip() not in missing:
                    missing.append(name.strip())
        else:
            return missing
    missing = []
    for soname in XCB_LIBRARIES:
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(soname)
    return missing


def _uses_xcb(env: os._Environ | dict) -> bool:
    platform = env.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(";")[0].startswith("xcb")
    # In a Wayland session Qt tries its wayland plugin first.
    return not (env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland")


def platform_problem(env: os._Environ | dict | None = None) -> str | None:
    """One sentence saying why Qt's platform plugin will not load, or None when it should."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux") or not _uses_xcb(env):
        return None
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return ("no display to open the window on (DISPLAY is not set): start the app from a desktop "
                "session, or render a view to a PNG with --screenshot FILE")
    missing = missing_xcb_libraries()
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(debian_package(m) for m in missing))
    what = (f"the system library {missing[0]} is missing; on Debian/Ubuntu install it" if len(missing) == 1 else
            f"the system libraries {', '.join(missing)} are missing; on Debian/Ubuntu install them")
    return (f"Qt's xcb platform plugin cannot load: {what} with `sudo apt install {packages}` "
            f"({OTHER_SYSTEMS})")
