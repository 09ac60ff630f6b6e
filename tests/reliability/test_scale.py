"""Scale: a long runbook plans, runs and resumes; `history` over many runs; validation at
sizes where the quadratic versions took minutes.

These check what a big runbook must still do, in-process and without a clock; how
long it takes is bench/'s job: ``bench/engine_bench.py --steps 5000`` (run and resume of
5,000 steps), ``bench/history_bench.py`` (history over 100 runs), ``bench/scale_bench.py``
(validate and plan, 2k to 45k steps). docs/reliability.md, "Scale", has the figures.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from runbook import commands
from runbook.state import StateStore

STEPS = 200
HISTORY_RUNS = 30


def _long_runbook(steps: int) -> str:
    lines = ["name: big", "steps:"]
    for i in range(steps - 1):
        lines += [f"  - id: s{i:04d}", "    kind: command", "    run: [/bin/true]", "    irreversible: true"]
    # The last step fails the first time, like a failure at the very end of a long change.
    lines += [
        f"  - id: s{steps - 1:04d}",
        "    kind: command",
        "    run: [sh, -c, 'test -e failed-once || { touch failed-once; exit 1; }']",
        "    irreversible: true",
    ]
    return "\n".join(lines) + "\n"


def test_long_runbook_plans_runs_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 `kind: command` steps, in-process: plan lists them all, the run fails at the last,
    the resume re-runs only the last step after re-reading 199 passed ones. Every step has
    exactly one passed attempt. (The run was quadratic in its steps once: the template context
    copied every step's state for each step; bench/engine_bench.py --steps 5000 times it.)"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNBOOK_STATE_URL", raising=False)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "big.yaml").write_text(_long_runbook(STEPS))
    last = f"s{STEPS - 1:04d}"

    planned: list[str] = []
    assert commands.plan("big.yaml", echo=planned.append) == 0
    assert last in "\n".join(planned)
    assert commands.run("big.yaml", interactive=False, workdir=tmp_path, stream=io.StringIO()) == 1
    assert commands.run("big.yaml", resume=True, interactive=False, workdir=tmp_path, stream=io.StringIO()) == 0

    with StateStore.open(f"sqlite:///{tmp_path / '.runbook' / 'state.db'}") as store:
        (run,) = store.list_runs("big")
        assert run.status == "passed"
        attempts = store.attempts(run.run_id)
    passed = [a for a in attempts if a.status == "passed"]
    assert len(passed) == STEPS and len({a.step_id for a in passed}) == STEPS
    (failed,) = [a for a in attempts if a.status != "passed"]
    assert (failed.step_id, failed.status) == (last, "failed")


@pytest.fixture
def recorded_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """30 recorded runs of a 5-step runbook, run in-process by the real engine, alternating two environments."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNBOOK_STATE_URL", raising=False)
    path = tmp_path / "runbooks" / "h.yaml"
    path.parent.mkdir()
    path.write_text(
        "name: h\nenvironments: {staging: {}, production: {}}\nsteps:\n"
        + "".join(f"  - id: s{i}\n    kind: command\n    run: [/bin/true]\n    irreversible: true\n" for i in range(5))
    )
    for i in range(HISTORY_RUNS):
        code = commands.run(str(path), env=("staging", "production")[i % 2], interactive=False, workdir=tmp_path, stream=io.StringIO())
        assert code == 0
    return tmp_path


def test_history_over_many_runs_limits_and_filters(recorded_runs: Path) -> None:
    """`runbook history` over 30 recorded runs: 20 rows by default, every run with --limit 100,
    one runbook and environment's 15 with a filter; the CLI prints the same as the function.
    (bench/history_bench.py times it over 100 runs.)"""
    for kwargs, rows in (({}, 20), ({"limit": 100}, HISTORY_RUNS), ({"name": "h", "env": "staging", "limit": 100}, HISTORY_RUNS // 2)):
        out: list[str] = []
        assert commands.history(echo=out.append, **kwargs) == 0  # type: ignore[arg-type]
        lines = "\n".join(out).splitlines()
        assert len(lines) == 1 + rows, (kwargs, lines)
        if "env" in kwargs:
            assert all(" staging " in line for line in lines[1:])

    cli = subprocess.run([sys.executable, "-m", "runbook", "history", "--limit", "100"], cwd=recorded_runs, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert len(cli.stdout.splitlines()) == 1 + HISTORY_RUNS


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
