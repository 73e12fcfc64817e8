"""Where the runtime resources live: the top-level `resources/` folder (DESIGN §4).

Every file that the engine and the app read at run time (presets, styles, icons, palettes) is
found through `resource_path`, so that the same code works from a source checkout, from an
editable install and from an installed wheel:

- a source checkout (the engine imported from `<repo>/murid_engine`, editable or through
  PYTHONPATH) reads `<repo>/resources/` beside it, so each checkout or git worktree reads its
  own files rather than those of whichever checkout was pip-installed;
- an installed package (wheel, `pip install .`) reads the copy packaged as `murid_resources`
  (the build maps `resources/` onto that package name: see setup.py), found by importlib.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from pathlib import Path

RESOURCES_PACKAGE = "murid_resources"
_CHECKOUT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def resources_dir() -> Path:
    """The folder holding the resources: the checkout's `resources/` or the installed package."""
    local = _CHECKOUT / "resources"
    # pyproject.toml beside it marks a source tree; a bare site-packages/resources is someone else's.
    if (_CHECKOUT / "pyproject.toml").is_file() and (local / "__init__.py").is_file():
        return local
    try:
        installed = importlib.resources.files(RESOURCES_PACKAGE)
    except ModuleNotFoundError:
        raise RuntimeError(f"the package '{RESOURCES_PACKAGE}' (MURID's presets and other resources) "
                           "is not installed; reinstall murid-studio") from None
    # A wheel installs as plain files, so the package is a real folder (not a zip).
    return Path(str(installed))


def resource_path(*parts: str) -> Path:
    """A file or folder under the resources, e.g. resource_path("presets", "cpu-demo.json")."""
    return resources_dir().joinpath(*parts)
