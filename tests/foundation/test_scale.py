"""Validation stays fast on a large runbook: 1,000 steps with checks and templates
in well under a second on a developer machine (the bound here is generous for CI)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from runbook.loader import load_runbook

STEPS = 1_000
LIMIT_S = 2.0


def generated_runbook(steps: int) -> dict[str, Any]:
    """A valid runbook whose every step has templates, and every other one checks and outputs."""
    body: list[dict[str, Any]] = []
    for i in range(steps):
        step: dict[str, Any] = {"id": f"s{i}", "title": f"Step {i} in {{{{ vars.region }}}}"}
        if i % 2:
            step.update(
                kind="command",
                run=f"./apply --part {i} --region {{{{ vars.region }}}} --after '{{{{ steps.s{i - 1}.outputs.n }}}}'",
                irreversible=True,
                retries={"count": 2, "delay": "5s"},
                timeout="5m",
                estimate="1m-2m",
                preconditions=[{"check": "file_exists", "path": f"/srv/{{{{ vars.region }}}}/{i}"}],
                gates=[{"check": "sql", "connection": "db", "query": f"select count(*) from part_{i}", "expect": ">= 1"}],
                outputs={"n": "{{ result.stdout }}"},
            )
        else:
            step.update(
                kind="manual",
                instruction=f"Confirm part {i} in {{{{ vars.region }}}} ({{{{ environment }}}})",
                needs=[f"s{i - 1}"] if i else [],
                when="vars.replicas > 1",
                outputs={"n": "{{ result.stdout }}"},
            )
        body.append(step)
    return {
        "name": "scale",
        "vars": {"region": "eu-west-1", "replicas": 2},
        "environments": {"staging": {"vars": {"region": "us-east-1"}}},
        "connections": {"db": "sqlite:///{{ vars.region }}.db"},
        "steps": body,
    }


def test_thousand_step_runbook_validates_quickly(tmp_path: Path) -> None:
    """Loading and validating a generated 1,000-step runbook takes under two seconds."""
    path, warm_up = tmp_path / "scale.yaml", tmp_path / "warm-up.yaml"
    path.write_text(yaml.safe_dump(generated_runbook(STEPS), sort_keys=False), encoding="utf-8")
    # Importing the step and check kinds is a one-off cost, not validation's. (A small
    # runbook of its own, so that templates analysed and cached here are not the big one's.)
    warm_up.write_text(yaml.safe_dump(generated_runbook(2), sort_keys=False), encoding="utf-8")
    load_runbook(warm_up)
    started = time.perf_counter()
    loaded = load_runbook(path)
    elapsed = time.perf_counter() - started
    print(f"load_runbook of {STEPS} steps: {elapsed:.3f}s")
    assert len(loaded.runbook.steps) == STEPS
    assert loaded.warnings == []
    assert elapsed < LIMIT_S, f"took {elapsed:.2f}s"
