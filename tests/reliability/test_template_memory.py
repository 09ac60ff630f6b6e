"""Template memory is bounded by what an operation *builds*, checked before it is
allocated (issue 11, item 6), with an OS limit behind it for ``validate`` and ``plan``.

A list of two million references to one 2 MB string is 16 MB of pointers but
4 TB of text once printed: ``{{ ['x'*2000000] * 2000000 }}`` grew ``plan`` to
23 GB. Each hostile template here is planned by a real ``runbook`` process
whose peak resident size is read back from the kernel (``RUSAGE_CHILDREN``,
one fresh child process per case, run from a fresh interpreter so that no
earlier child's peak is counted): at most 200 MB, a refusal naming the
template, exit 2, no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import _clean_env

PEAK_RSS_LIMIT_MB = 200

HOSTILE = [
    "{{ ['x' * 2000000] * 2000000 }}",
    "{{ ['x' * 2000000] * 500 }}",
    "{{ ('x' * 2000000,) * 500 }}",
    "{{ ('x\\n' * 1000000) | indent(1000) }}",
    "{{ ('x\\n' * 1000000) | indent('y' * 1000) }}",
    # Built without a multiplication: a literal of 500 references to one 2 MB string.
    *(
        "{% set s = 'x' * 2000000 %}{% set l = [" + ", ".join(["s"] * 500) + "] %}" + use
        for use in ("{{ l }}", "{{ l | join }}", "{{ l | tojson }}", "{{ '-'.join(l) }}", "{{ l ~ '' }}", "{{ l | string }}")
    ),
    "{{ (['x' * 2000000] * 500) | join(',') }}",
    "{{ (['x' * 2000000] * 500) | tojson }}",
    "{{ (['x' * 2000000] * 500) | string }}",
    "{{ ['x' * 2000000] * 2 }}{{ ['x' * 1000000] * 3 }}",
    "{% set l = ['x' * 2000000] * 500 %}{% for i in l %}{{ l }}{% endfor %}",
    "{{ '-'.join(['x' * 2000000] * 500) }}",
    "{{ ('%s' * 500) | format(*(['x' * 2000000] * 500)) }}",
    "{{ '{}{}{}{}'.format(*(['x' * 2000000] * 4)) }}",
    "{{ ([1] | batch(2000000, 'x' * 2000000)) | list }}",
    "{% for b in [1] | batch(2000000, 'x' * 2000000) %}{{ b }}{% endfor %}",
    "{{ ('x ' * 1000000) | wordwrap(1, true, 'y' * 1000) }}",
    "{{ 'x' * 2000000 ~ ['x' * 2000000] * 500 }}",
    "{{ {'k': ['x' * 2000000] * 500} }}",
    "{{ ['x' * 2000000] * 500 + [1] }}",
    "{{ ('x' * 2000000) | replace('x', 'y' * 1000) }}",
]

MEASURE = """
import json, resource, subprocess, sys
proc = subprocess.run([sys.executable, "-m", "runbook", "plan", "hostile.yaml"], capture_output=True, text=True, timeout=110)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": proc.returncode, "out": proc.stdout[-2000:], "err": proc.stderr[-2000:], "peak_mb": peak_kb / 1024}))
"""


def plan_peak(tmp_path: Path, template: str) -> dict[str, object]:
    """Plan a one-step runbook whose ``run`` is ``template``; its exit code, output and peak RSS."""
    runbook = {"name": "hostile", "steps": [{"id": "a", "kind": "command", "run": ["echo", template], "irreversible": True}]}
    (tmp_path / "hostile.yaml").write_text(json.dumps(runbook))
    measured = subprocess.run([sys.executable, "-c", MEASURE], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert measured.returncode == 0, measured.stderr
    result: dict[str, object] = json.loads(measured.stdout)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("template", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_hostile_template_is_refused_within_bounded_memory(tmp_path: Path, template: str) -> None:
    """Refused with exit 2, a message naming the step, no traceback; peak RSS <= 200 MB."""
    result = plan_peak(tmp_path, template)
    output = f"{result['out']}{result['err']}"
    assert result["peak_mb"] <= PEAK_RSS_LIMIT_MB, (result["peak_mb"], output[-500:])
    assert result["code"] == 2, output
    assert "Traceback" not in output and "internal error" not in output, output
    assert "steps[0]" in output or "steps.a" in output or "step a" in output, output


def test_legitimate_large_values_still_render(tmp_path: Path) -> None:
    """Bounds count what is built: a 1 MB string, a list of 10,000 short items and an indent
    of a 1,000-line text stay allowed."""
    template = "{{ ('x' * 1000000) | length }} {{ (['ab'] * 10000) | join(',') | length }} {{ ('x\\n' * 1000) | indent(8) | length }}"
    result = plan_peak(tmp_path, template)
    assert result["code"] == 0, result
    assert "1000000 29999 9992" in str(result["out"]), result["out"]


@pytest.mark.parametrize("verb", ["plan", "validate"])
def test_memory_limit_is_an_operator_error(tmp_path: Path, verb: str) -> None:
    """Past the template bounds, the OS limit stops ``plan`` and ``validate``: running out of it
    is one line and exit 2, not a traceback (the limit is lowered here below what the
    command needs: plan builds three 2 MB strings, validate needs more than 20 MB to import)."""
    template = "{{ ('x' * 2000000) | length }}{{ ('y' * 2000000) | reverse | length }}{{ ('x' * 2000000) | upper | length }}"
    runbook = {"name": "m", "steps": [{"id": "a", "kind": "command", "run": ["echo", template], "irreversible": True}]}
    (tmp_path / "m.yaml").write_text(json.dumps(runbook))
    env = _clean_env({"RUNBOOK_PLAN_MEMORY_MB": "20"})
    result = subprocess.run([sys.executable, "-m", "runbook", verb, "m.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "needed more than 20 MB of memory" in result.stderr or "needs more memory" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("raised", ["memory", "system", "import-from-memory"])
def test_out_of_memory_in_any_disguise_is_an_operator_error(raised: str) -> None:
    """Under the lowered limit a failed allocation inside the import system comes out as a
    SystemError, or an ImportError whose context is the MemoryError: each is the same one
    line with exit 2 (seen in CI: a SystemError from unmarshalling cached bytecode)."""
    from runbook.cli import _memory_limited
    from runbook.errors import RunbookError

    def verb() -> int:
        if raised == "memory":
            raise MemoryError
        if raised == "system":
            raise SystemError("<built-in function loads> returned NULL without setting an exception")
        try:
            raise MemoryError
        except MemoryError as err:
            raise ImportError("cannot import name 'x'") from err

    with pytest.raises(RunbookError, match="needed more than"):
        _memory_limited(verb)()


def test_other_errors_pass_through_the_memory_limit() -> None:
    from runbook.cli import _memory_limited

    def verb() -> int:
        raise KeyError("not memory")

    with pytest.raises(KeyError):
        _memory_limited(verb)()
