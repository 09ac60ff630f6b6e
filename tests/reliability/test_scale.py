"""Scale: a 5,000-step runbook plans, runs and resumes; `history` over 100 runs is fast.

SQLite state store only, to keep CI time sane (docs/reliability.md, "Scale",
has the measured numbers). Timings are printed as ``[timing]`` lines (pytest -s).
"""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runbook import commands
from tests.reliability.conftest import Proj, timing

STEPS = 5_000
HISTORY_RUNS = 100
HISTORY_LIMIT_S = 0.100


def _big_runbook(steps: int) -> str:
    lines = ["name: big", "steps:"]
    for i in range(steps - 1):
        lines += [f"  - id: s{i:04d}", "    kind: command", "    run: [/bin/true]", "    irreversible: true"]
    # The last step SIGKILLs the runbook process the first time, like a crash at the very end.
    lines += [
        f"  - id: s{steps - 1:04d}",
        "    kind: command",
        "    run: [sh, -c, 'test -e killed || { touch killed; kill -9 $PPID; }']",
        "    irreversible: true",
    ]
    return "\n".join(lines) + "\n"


def test_five_thousand_step_runbook_plans_runs_and_resumes(sqlite_proj: Proj) -> None:
    """5,000 `kind: command` steps running /bin/true: plan, run (SIGKILLed by the last
    step), resume (re-runs only the last step, after re-reading 4,999 passed ones).
    Every step has exactly one passed attempt; the engine's overhead per step stays
    in milliseconds (it was quadratic before: the template context copied every step's
    state for each step, 73 s for this run)."""
    proj = sqlite_proj
    proj.write("big.yaml", _big_runbook(STEPS))

    t0 = time.perf_counter()
    planned = proj.runbook("plan", "big.yaml", timeout=120)
    plan_s = time.perf_counter() - t0
    assert planned.returncode == 0, planned.stderr
    assert f"s{STEPS - 1:04d}" in planned.stdout

    t0 = time.perf_counter()
    killed = proj.runbook("run", "big.yaml", timeout=300)
    run_s = time.perf_counter() - t0
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr

    t0 = time.perf_counter()
    resumed = proj.runbook("run", "big.yaml", "--resume", timeout=300)
    resume_s = time.perf_counter() - t0
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr

    t0 = time.perf_counter()
    assert proj.runbook("--help").returncode == 0
    startup_s = time.perf_counter() - t0
    timing(f"plan {STEPS} steps (CLI wall)", plan_s)
    timing(f"run {STEPS} steps (CLI wall, killed at the last)", run_s)
    timing(f"per step (run wall / steps)", run_s / STEPS)
    timing(f"resume after {STEPS - 1} passed steps (CLI wall)", resume_s)
    timing("CLI start-up (runbook --help)", startup_s)

    with proj.store() as store:
        (run,) = store.list_runs("big")
        assert run.status == "passed"
        attempts = store.attempts(run.run_id)
    passed = [a for a in attempts if a.status == "passed"]
    assert len(passed) == STEPS and len({a.step_id for a in passed}) == STEPS
    (interrupted,) = [a for a in attempts if a.status != "passed"]
    assert interrupted.step_id == f"s{STEPS - 1:04d}" and interrupted.status == "interrupted"
    assert run_s / STEPS < 0.025, "engine overhead per step regressed"
    assert resume_s < 15


@pytest.fixture
def hundred_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """100 recorded runs of a 5-step runbook, run in-process by the real engine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNBOOK_STATE_URL", raising=False)
    path = tmp_path / "runbooks" / "h.yaml"
    path.parent.mkdir()
    path.write_text(
        "name: h\nenvironments: {staging: {}, production: {}}\nsteps:\n"
        + "".join(f"  - id: s{i}\n    kind: command\n    run: [/bin/true]\n    irreversible: true\n" for i in range(5))
    )
    t0 = time.perf_counter()
    for i in range(HISTORY_RUNS):
        code = commands.run(str(path), env=("staging", "production")[i % 2], interactive=False, workdir=tmp_path, stream=io.StringIO())
        assert code == 0
    timing(f"record {HISTORY_RUNS} runs in-process", time.perf_counter() - t0)
    return tmp_path


def test_history_over_100_runs_answers_within_100_ms(hundred_runs: Path) -> None:
    """`runbook history` over 100 recorded runs: the command function (store open, query,
    render; interpreter start-up excluded) answers in < 100 ms, median of 9 calls after one
    warm-up; the CLI wall time, start-up included, is reported."""
    out: list[str] = []
    assert commands.history(echo=out.append) == 0  # warm-up: imports, first open
    samples = {}
    for label, kwargs in (("default limit 20", {}), ("--limit 100", {"limit": 100}), ("one runbook and env, --limit 100", {"name": "h", "env": "staging", "limit": 100})):
        times = []
        for _ in range(9):
            out.clear()
            t0 = time.perf_counter()
            assert commands.history(echo=out.append, **kwargs) == 0  # type: ignore[arg-type]
            times.append(time.perf_counter() - t0)
        samples[label] = statistics.median(times)
        timing(f"commands.history, {label} (median of 9)", samples[label])
    rows = "\n".join(out).splitlines()
    assert len(rows) == 1 + 50  # header + this runbook's staging runs

    t0 = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "runbook", "history", "--limit", "100"], cwd=hundred_runs, capture_output=True, text=True, timeout=60)
    cli_s = time.perf_counter() - t0
    assert cli.returncode == 0, cli.stderr
    assert len(cli.stdout.splitlines()) == 1 + HISTORY_RUNS
    timing("runbook history --limit 100 (CLI wall, start-up included)", cli_s)
    assert all(seconds < HISTORY_LIMIT_S for seconds in samples.values()), samples


# ---------------------------------------------------------------- validation cost grows with the steps, not their square
# bench/scale_bench.py measures it (2k/5k/20k/45k steps side by side); these check what
# the linear versions must still decide, at sizes where the quadratic ones took minutes.


def _compact_steps(count: int, extra: dict[int, str] | None = None) -> str:
    extra = extra or {}
    return "".join(f"- {{id: s{i}, kind: command, run: {extra.get(i, 'x')}, irreversible: true}}\n" for i in range(count))


@pytest.mark.slow
def test_twenty_thousand_steps_validate_and_references_are_checked_by_position(tmp_path: Path) -> None:
    """20,000 steps (12 s before: the earlier step ids were copied into a set for every step).
    A template may read any earlier step, never a later one, nor itself outside gates and outputs;
    a var default may read only the vars declared before it."""
    from runbook.errors import InvalidRunbook
    from runbook.loader import load_runbook

    count = 20_000
    path = tmp_path / "big.yaml"
    steps = {19_999: "'{{ steps.s0.status }} {{ steps.s19998.outputs.x }}'", 5: "'{{ steps.s19999.status }}'", 7: "'{{ steps.s7.status }}'"}
    path.write_text("name: big\nvars:\n  a: '{{ vars.b }}'\n  b: x\n  c: '{{ vars.b }}'\nsteps:\n" + _compact_steps(count, steps))
    with pytest.raises(InvalidRunbook) as raised:
        load_runbook(path)
    errors = [(d.path, d.message) for d in raised.value.diagnostics if d.severity == "error"]
    assert errors == [
        ("vars.a.default", "template uses undefined var 'b'"),
        ("steps[5].run", "template reads 'steps.s19999', which is not an earlier step"),
        ("steps[7].run", "template reads 'steps.s7', which is not an earlier step"),
    ]
    del steps[5], steps[7]
    path.write_text("name: big\nvars:\n  b: x\n  c: '{{ vars.b }}'\nsteps:\n" + _compact_steps(count, steps))
    assert len(load_runbook(path).runbook.steps) == count


def test_did_you_mean_stops_at_its_budget_and_every_error_is_still_reported(tmp_path: Path) -> None:
    """1,000 steps each needing an unknown step: 1,000 errors; suggestions stop once a million
    comparisons would be needed (3,000 such steps took 87 s, each compared with every step id)."""
    from runbook.errors import InvalidRunbook
    from runbook.loader import MAX_SUGGESTION_COMPARISONS, load_runbook

    count = 1_000
    path = tmp_path / "needs.yaml"
    path.write_text("name: big\nsteps:\n" + "".join(f"- {{id: s{i}, kind: command, run: x, irreversible: true, needs: s{i}x}}\n" for i in range(count)))
    with pytest.raises(InvalidRunbook) as raised:
        load_runbook(path)
    errors = [d.message for d in raised.value.diagnostics if d.severity == "error"]
    assert len(errors) == count and all(m.startswith("needs unknown step 's") for m in errors)
    suggested = [m for m in errors if "did you mean" in m]
    assert errors[0] == "needs unknown step 's0x'; did you mean 's0'?"
    assert 0 < len(suggested) <= MAX_SUGGESTION_COMPARISONS // count


@pytest.mark.slow
def test_a_template_with_many_references_is_analysed_in_one_pass() -> None:
    """15,000 references in one template: each reported once, prefixes of longer chains dropped
    (the chains, prefixes included, were compared pairwise: 4,000 references took 8 s, these minutes)."""
    from runbook.templating import analyze

    source = " ".join(f"{{{{ vars.v{i} }}}} {{{{ steps.s{i}.outputs.x }}}} {{{{ steps.s{i} }}}}" for i in range(5_000))
    parts = [r.parts for r in analyze(source).references]
    assert len(parts) == 10_000
    assert parts[:2] == [("vars", "v0"), ("steps", "s0", "outputs", "x")]
