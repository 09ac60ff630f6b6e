"""Walking a step's data as written: the nested dicts and lists of YAML values."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def strings(data: Any, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    """Every string in ``data``, with the mapping key it is the value of (``None`` at
    the top and for list items, which take their list's key)."""
    if isinstance(data, str):
        yield key, data
    elif isinstance(data, dict):
        for name, value in data.items():
            yield from strings(value, name if isinstance(name, str) else None)
    elif isinstance(data, list):
        for value in data:
            yield from strings(value, key)
