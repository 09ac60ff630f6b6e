"""Test-only: make this Python process a machine whose clock is off, with a name of its own.

Put this directory on PYTHONPATH of a subprocess and set
RUNBOOK_TEST_CLOCK_SKEW (seconds, may be negative) and RUNBOOK_TEST_HOSTNAME.
Python then reads ``time.time()``, ``datetime.now()`` (and ``utcnow``/``today``)
that many seconds off, as on a host whose clock drifted, and
``socket.gethostname()`` answers the given name, as another host would. Only
what the process itself reads is changed: the database server keeps its clock.
"""

from __future__ import annotations

import datetime as _datetime
import os
import socket
import time

_SKEW = float(os.environ.get("RUNBOOK_TEST_CLOCK_SKEW", "0"))
_HOSTNAME = os.environ.get("RUNBOOK_TEST_HOSTNAME")
_real_time, _real_time_ns = time.time, time.time_ns
_Real = _datetime.datetime
_DELTA = _datetime.timedelta(seconds=_SKEW)


def _time() -> float:
    return _real_time() + _SKEW


def _time_ns() -> int:
    return _real_time_ns() + int(_SKEW * 1e9)


class _SameClass(type):
    # Real datetimes (from drivers, parsers, arithmetic) still pass isinstance checks.
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, _Real)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _Real)


class _SkewedDatetime(_Real, metaclass=_SameClass):
    __slots__ = ()  # the size C extensions expect of a datetime

    @classmethod
    def now(cls, tz: _datetime.tzinfo | None = None) -> _datetime.datetime:  # type: ignore[override]
        return _Real.now(tz) + _DELTA

    @classmethod
    def utcnow(cls) -> _datetime.datetime:  # type: ignore[override]
        return _Real.utcnow() + _DELTA

    @classmethod
    def today(cls) -> _datetime.datetime:  # type: ignore[override]
        return _Real.today() + _DELTA


if _SKEW:
    time.time, time.time_ns = _time, _time_ns
    _datetime.datetime = _SkewedDatetime  # type: ignore[misc]
if _HOSTNAME:
    socket.gethostname = lambda: _HOSTNAME
