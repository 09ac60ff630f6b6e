"""``check: command`` runs under the run's process supervisor, like a command step."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from runbook.checks import CheckContext, get_check_kind
from runbook.connections import Connections
from runbook.masking import Masker
from runbook.process import ProcessSupervisor, group_alive

KIND = get_check_kind("command")


def _context(tmp_path: Path, supervisor: ProcessSupervisor | None, on_process_start=None) -> CheckContext:  # type: ignore[no-untyped-def]
    masker = Masker()
    return CheckContext(
        workdir=tmp_path,
        env=dict(os.environ),
        masker=masker,
        connections=Connections({}, masker),
        timeout=60,
        supervisor=supervisor,
        on_process_start=on_process_start,
    )


def test_the_check_reports_its_process_group(tmp_path: Path, supervisor: ProcessSupervisor) -> None:
    """``on_process_start`` gets the group of the check's command, as a step's does."""
    started: list[int] = []
    params = KIND.Params.model_validate({"run": "echo $$ > pgid"})
    result = KIND.evaluate(params, _context(tmp_path, supervisor, started.append))
    assert result.ok and not result.interrupted
    assert started == [int((tmp_path / "pgid").read_text())]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT], ids=lambda s: signal.Signals(s).name)
def test_a_signal_stops_the_check_and_it_says_interrupted(tmp_path: Path, supervisor: ProcessSupervisor, signum: int) -> None:
    """A signal while the check's command runs stops its whole group; the result is interrupted, not a failed check."""
    groups: list[int] = []

    def signal_once_started(pgid: int) -> None:
        groups.append(pgid)
        os.kill(os.getpid(), signum)

    params = KIND.Params.model_validate({"run": "sleep 30 & sleep 30; wait"})
    result = KIND.evaluate(params, _context(tmp_path, supervisor, signal_once_started))
    assert result.interrupted and not result.ok
    assert result.observed == "interrupted"
    assert supervisor.signal_received == signum
    assert not group_alive(groups[0])


def test_a_check_after_a_stop_was_requested_starts_nothing(tmp_path: Path, supervisor: ProcessSupervisor) -> None:
    """Once a stop was requested, the check does not start its command."""
    signal.raise_signal(signal.SIGTERM)
    params = KIND.Params.model_validate({"run": "touch ran"})
    result = KIND.evaluate(params, _context(tmp_path, supervisor))
    assert result.interrupted
    assert not (tmp_path / "ran").exists()
