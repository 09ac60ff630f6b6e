"""Descriptions of the format's keys (placeholder)."""

from __future__ import annotations


def describe(owner: str, key: str) -> str | None:
    return None
