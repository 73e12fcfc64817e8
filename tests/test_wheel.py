"""The package as a wheel: built from this tree, installed into a fresh virtual environment, used
from another folder. Presets (and every other file of resources/) must come from the installed
package, not from a source checkout that happens to be nearby."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import murid_engine
from murid_engine.resources import RESOURCES_PACKAGE

REPO = Path(__file__).resolve().parents[1]
# What the build reads; copied so that the build's own build/ and *.egg-info stay out of the tree.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "murid_engine", "murid_gui", "resources")
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")


def _offline_build_missing() -> str | None:
    """Why `pip wheel --no-build-isolation` cannot work here (no network is used), or None."""
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed"
    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    if (major, minor) < (64, 0):
        return f"setuptools {setuptools.__version__} is older than pyproject's setuptools>=64"
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {setuptools.__version__} needs the 'wheel' package to build wheels"
    return None


needs_setuptools = pytest.mark.skipif(
    _offline_build_missing() is not None,
    reason=f"cannot build the wheel offline (--no-build-isolation): {_offline_build_missing()}")


def _resource_files() -> set[str]:
    """Every file of resources/ as the wheel must hold it: murid_resources/<relative path>."""
    root = REPO / "resources"
    return {f"{RESOURCES_PACKAGE}/{p.relative_to(root).as_posix()}" for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        (shutil.copytree(REPO / name, src / name, ignore=JUNK) if (REPO / name).is_dir()
         else shutil.copy2(REPO / name, src / name))
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, timeout=180)
    if build.returncode != 0 and "No module named" in build.stderr + build.stdout:
        pytest.skip(f"cannot build a wheel offline here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stdout + build.stderr
    (path,) = out.glob("murid_studio-*.whl")
    return path


@needs_setuptools
def test_the_wheel_carries_every_resource_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _resource_files() <= names, sorted(_resource_files() - names)
    assert f"{RESOURCES_PACKAGE}/presets/cpu-demo.json" in names
    code = {p.relative_to(REPO).as_posix() for package in ("murid_engine", "murid_gui")
            for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts}
    assert code <= names, sorted(code - names)  # every module, a sub-package without __init__.py too
    assert not any(n.startswith(("tests/", "resources/")) for n in names)  # no stray top-level folders


@needs_setuptools
def test_installed_wheel_finds_its_presets_from_another_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    # --system-site-packages: torch and the other dependencies come from this environment, so
    # nothing is downloaded; the wheel itself goes in with --no-deps.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # This environment's pip installs into the venv; --force-reinstall: the same version may be
    # installed (editable) outside it, which pip must not count as already satisfied.
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "--force-reinstall", "-q", str(wheel)],
                             capture_output=True, text=True, env=env, timeout=180)
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import murid_engine, murid_engine.config as c, murid_engine.resources as r; "
            "cfg = c.load_preset('cpu-demo'); "
            "print(murid_engine.__file__); print(r.resources_dir()); print(','.join(c.list_presets())); "
            "print(cfg.model.backbone, cfg.data.crop)")
    shown = subprocess.run([str(python), "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    engine_file, resources, presets, model = shown.stdout.strip().splitlines()
    site = venv.resolve()
    assert Path(engine_file).resolve().is_relative_to(site)  # the installed copy, not this checkout
    assert Path(resources).resolve().is_relative_to(site) and Path(resources).name == RESOURCES_PACKAGE
    assert presets.split(",") == sorted(p.stem for p in (REPO / "resources" / "presets").glob("*.json"))
    assert model == "tiny (256, 128)"  # resources/presets/cpu-demo.json

    version = subprocess.run([str(venv / "bin" / "murid"), "--version"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"murid {murid_engine.__version__}"
    assert wheel.name.startswith(f"murid_studio-{murid_engine.__version__}-")  # pyproject's version agrees
