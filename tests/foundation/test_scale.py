"""A large runbook validates: 1,000 steps with checks and templates load without a warning.

How long it takes is measured by ``bench/scale_bench.py`` (no clock here: a loaded
2-core machine flakes wall-clock bounds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from runbook.loader import load_runbook

STEPS = 1_000


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


def test_thousand_step_runbook_validates(tmp_path: Path) -> None:
    """A generated 1,000-step runbook, every step templated, loads whole and without a warning."""
    path = tmp_path / "scale.yaml"
    path.write_text(yaml.safe_dump(generated_runbook(STEPS), sort_keys=False), encoding="utf-8")
    loaded = load_runbook(path)
    assert len(loaded.runbook.steps) == STEPS
    assert loaded.warnings == []
