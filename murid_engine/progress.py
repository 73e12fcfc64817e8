"""Progress bars for long work: tqdm on standard error, silent when it is not a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    # disable=None: tqdm turns itself off when stderr is not a TTY (CI logs, tests).
    yield from tqdm(items, desc=desc, total=total, unit="img", dynamic_ncols=True, disable=None)
