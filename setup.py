"""Build script for the one thing pyproject.toml's tables cannot say; everything else is there.

The top-level `resources/` folder (DESIGN §4) installs as the package `murid_resources`: a
`packages.find` table only finds folders under their own names, so the package list is made here.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["murid_engine*", "murid_gui*"]) + ["murid_resources"],
    package_dir={"murid_resources": "resources"},
)
