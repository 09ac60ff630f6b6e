"""``check: time_window`` - now is inside a maintenance window such as ``Sat,Sun 01:00-05:00``.

A window may cross midnight (``22:00-02:00``); days name the day the window
starts on. Times are read in ``timezone`` (an IANA name, UTC by default).
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator

from runbook.checks.base import CheckContext, CheckResult

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WINDOW = re.compile(r"^\s*(?:(?P<days>[A-Za-z,\- ]+?)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


class TimeWindowParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window: str
    timezone: str = "UTC"

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value


def parse_window(text: str) -> tuple[set[int], time, time]:
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"window {text!r} is not like '01:00-05:00' or 'Sat,Sun 22:00-02:00'")
    days: set[int] = set(range(7))
    if match["days"]:
        days = set()
        for part in match["days"].replace(" ", "").lower().split(","):
            first, _, last = part.partition("-")
            if first[:3] not in _DAYS or (last and last[:3] not in _DAYS):
                raise ValueError(f"unknown day in window {text!r}; use Mon..Sun")
            a, b = _DAYS.index(first[:3]), _DAYS.index((last or first)[:3])
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    try:
        start, end = (time.fromisoformat(f"{int(t.split(':')[0]):02d}:{t.split(':')[1]}") for t in (match["start"], match["end"]))
    except ValueError as err:
        raise ValueError(f"bad time in window {text!r}: {err}") from err
    return days, start, end


def inside(now: datetime, days: set[int], start: time, end: time) -> bool:
    current = now.time().replace(tzinfo=None)
    if start <= end:
        return now.weekday() in days and start <= current < end
    # Crosses midnight: after start on a listed day, or before end on the day after one.
    if current >= start:
        return now.weekday() in days
    return current < end and (now - timedelta(days=1)).weekday() in days


class TimeWindowCheck:
    name: ClassVar[str] = "time_window"
    Params: ClassVar[type[BaseModel]] = TimeWindowParams
    read_only: ClassVar[bool] = True

    def describe(self, params: TimeWindowParams) -> str:
        return f"now is inside the window {params.window} ({params.timezone})"

    def evaluate(self, params: TimeWindowParams, ctx: CheckContext) -> CheckResult:
        now = datetime.now(ZoneInfo(params.timezone))
        ok = inside(now, *parse_window(params.window))
        return CheckResult(ok, now.strftime("%a %H:%M %Z"), f"within {params.window}")


KIND = TimeWindowCheck()
