"""The `--json [FILE]` convention of the bench commands: '-' prints only JSON, FILE also writes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from murid_engine.imageio import atomic_write_bytes


def emit_json(result: Any, json_out: str | None) -> bool:
    """Write or print `result` as `--json` asks; True when stdout must carry nothing else."""
    text = json.dumps(result, indent=2) + "\n"
    if json_out == "-":
        print(text, end="")
        return True
    if json_out:
        atomic_write_bytes(Path(json_out), text.encode())
    return False
