"""Durations are finite and bounded wherever they are read (runbook keys and `runbook set`):
`throttle=inf` or `99999999999h` once got past `set` and killed a running backfill."""

from __future__ import annotations

import pytest

from runbook.control_commands import _parse_settings
from runbook.errors import UsageError
from runbook.model import parse_duration


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "99999999999h", "9000h", float("inf"), float("nan"), 1e308, -0.5])
def test_durations_out_of_bounds_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("assignment", ["throttle=inf", "throttle=nan", "throttle=99999999999h", "max_batch=0", "max_batch=1e3", "throttle=1; drop table x"])
def test_set_refuses_what_the_backfill_could_not_use(assignment: str) -> None:
    with pytest.raises(UsageError):
        _parse_settings([assignment])


def test_reasonable_values_pass() -> None:
    assert parse_duration("1h30m") == 5400.0
    assert _parse_settings(["throttle=200ms", "max_batch=500"]) == {"throttle": 0.2, "max_batch": 500}
