"""New ids for rows the application creates: UUIDv7 strings, ordered by creation time.

The generator (``generate.py``) writes the same layout with a sequence number
in the time field, so every id the application creates later sorts after the
generated ones: a backfill started before them never reaches them, as rows
created by the new code should not be.
"""

from __future__ import annotations

import secrets
import time

# RFC 4122 variant bits for the first hex digit of the fourth group.
_VARIANT = "89ab"


def new_id() -> str:
    h = f"{time.time_ns() // 1_000_000:012x}{secrets.randbits(80):020x}"
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{_VARIANT[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"
