"""A typed record read from a JSON file, with one clear sentence for whatever is wrong with it.

The readers of round.json (curriculum.round_summary) and reports/evaluation.json (comparison)
go through `read_json_record`, so a broken file says the same kind of thing everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from murid_engine.errors import UserError

T = TypeVar("T")


def read_json_record(path: Path, what: str, from_json: Callable[[dict[str, Any]], T]) -> T:
    """`from_json` of the JSON object in `path` (`what`: "a round summary", say).

    FileNotFoundError passes through (the caller says what a missing file means); any other
    problem, unreadable, not JSON, or a key or value `from_json` cannot take, is a UserError.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable: {exc}") from None
    try:
        if not isinstance(data, dict):
            raise TypeError("it is not a JSON object")
        return from_json(data)
    except KeyError as exc:
        raise UserError(f"{path} is not {what}: it has no {exc}") from None
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise UserError(f"{path} is not {what}: {exc}") from None
