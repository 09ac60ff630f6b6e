"""Rolling batches: ``serial`` hosts at a time, ``max_fail`` failures tolerated per batch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def count_of(value: int | str, total: int) -> int:
    """``3`` -> 3; ``"25%"`` -> 25 % of ``total``, rounded down."""
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(int(value[:-1]) * total / 100)
    return int(value)


def batches(items: Sequence[T], serial: int | str | None, total: int) -> list[list[T]]:
    """``items`` in batches of ``serial`` (a count, or a percentage of ``total`` rounded up, at least 1)."""
    if not items:
        return []
    if serial is None:
        return [list(items)]
    size = math.ceil(int(serial[:-1]) * total / 100) if isinstance(serial, str) and serial.endswith("%") else int(serial)
    size = max(1, size)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def too_many_failures(failed: int, batch_size: int, max_fail: int | str) -> bool:
    return failed > count_of(max_fail, batch_size)
