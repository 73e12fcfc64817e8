"""The runtime resources (presets, and any styles, icons or palettes added here).

This folder installs as the package `murid_resources` (see pyproject.toml and setup.py), so that
an installed wheel carries it; code finds it through `murid_engine.resources`, never by path.
"""
