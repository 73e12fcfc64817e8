"""Benchmarks: speed and quality figures measured on this machine (recorded in docs/BENCHMARKS.md)."""
