"""Property tests: whatever YAML or command line the operator hands ``runbook
validate`` and ``runbook plan``, the answer is exit 0 or 2 and never a traceback.

Everything runs in-process through click's CliRunner so 150 examples per
property stay fast.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from runbook.cli import main

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "deploy-billing.yaml"

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    # The autouse fixture (conftest) only isolates cwd and env; sharing it across examples is fine.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Hypothesis caches (and, from its pytest plugin at collection time, writes) data under
# ./.hypothesis; keep it out of the working tree. Set at import, before collection ends.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "runbook-foundation-hypothesis")


# Words the loader treats specially, so random documents reach deep into validation.
# Only the step and check kinds that exist today are used (others are being written).
KNOWN_WORDS = [
    "name", "steps", "id", "kind", "command", "manual", "run", "instruction", "cwd", "env", "needs",
    "uses", "with", "vars", "environments", "default", "secret", "required", "choices", "preconditions",
    "gates", "check", "sql", "file_exists", "file_fresh", "path", "max_age", "expect", "query",
    "connection", "connections", "rollback", "irreversible", "dry_run", "safe", "skip", "confirm",
    "estimate", "outputs", "when", "retries", "timeout", "on_failure", "success_criteria", "metadata",
    "notifications", "title", "description", "params", "step", "hints", "on_fail",
]
NASTY_STRINGS = [
    "{{", "{%", "}}", "%}", "{{ vars.x }}", "{{ steps.a.outputs.b }}", "{% for x in vars %}", "{{ '' .__class__ }}",
    "{{ env.HOME }}", "{{ result.stdout }}", "{# #}", "{{ vars.x | nofilter }}", "== 1", "> ", "matches '('",
    "in (1, 2)", "is null", "5m-1m", "1h30m", "-5", "../x", "/etc/passwd", "a b", "A", "", " ", "\t", "\n",
    "ünïcödé", "💥🔥", "\u202e\u200b", "日本語", "\x00", "~", "null", "yes", "*", "&a", "- ", ": ", "#",
    "x" * 5000, "{{" * 300,
]
text = st.one_of(st.text(max_size=40), st.sampled_from(NASTY_STRINGS), st.sampled_from(KNOWN_WORDS))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True), text
)
keys = st.one_of(st.sampled_from(KNOWN_WORDS), st.text(max_size=12))
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)
documents = st.one_of(
    values,
    st.fixed_dictionaries({"name": st.one_of(st.just("fuzz"), text), "steps": st.lists(st.dictionaries(keys, values, max_size=6), max_size=4)}),
    st.dictionaries(keys, values, max_size=8),
)

VALID: dict[str, Any] = {
    "name": "fuzz-base",
    "description": "a valid runbook that the mutations start from",
    "vars": {"region": "eu", "token": {"default": "tok-123456", "secret": True}, "count": {"default": 2, "choices": [1, 2, 3]}},
    "environments": {"staging": {"vars": {"region": "us"}}, "production": {"protected": True}},
    "connections": {"db": "sqlite:///{{ vars.region }}.db"},
    "steps": [
        {
            "id": "check",
            "kind": "command",
            "run": "echo {{ vars.region }} {{ vars.token }}",
            "dry_run": "safe",
            "estimate": "30s",
            "preconditions": [{"check": "file_exists", "path": "x-{{ vars.region }}"}],
            "outputs": {"n": "{{ result.stdout }}"},
        },
        {
            "id": "change",
            "kind": "command",
            "title": "Change {{ vars.region }}",
            "needs": ["check"],
            "run": ["./change", "--n", "{{ steps.check.outputs.n }}"],
            "rollback": {"kind": "command", "run": "./undo"},
            "confirm": "sure?",
            "estimate": "1m-2m",
            "gates": [{"check": "sql", "connection": "db", "query": "select 1", "expect": "== 1"}],
            "when": "vars.count > 1",
        },
        {"id": "tell", "kind": "manual", "needs": "change", "instruction": "tell {{ vars.region }}", "irreversible": False},
        {"id": "fresh", "kind": "command", "run": "true", "irreversible": True, "gates": [{"check": "file_fresh", "path": "a", "max_age": "5m"}]},
    ],
    "rollback": [{"id": "undo", "title": "Undo", "steps": [{"id": "u1", "kind": "manual", "instruction": "undo it"}]}],
    "success_criteria": ["it works", {"description": "db ok", "check": {"check": "sql", "connection": "db", "query": "select 1"}}],
}


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside nested dicts and lists (the root is ``()``)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*prefix, i))
    return found


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated_runbooks(draw: st.DrawFn) -> Any:
    """The valid runbook above with one to four random edits."""
    doc: Any = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "replace", "swap_type", "insert", "string"]))
        if not path:
            if op in ("replace", "swap_type"):
                doc = draw(values)
            continue
        parent, last = _get(doc, path[:-1]), path[-1]
        target = parent[last]
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(values)
        elif op == "swap_type":
            # The same content as another type: a list for a string, a string for a mapping...
            parent[last] = draw(st.sampled_from([[target], {"x": target}, str(target), None, 0, True]))
        elif op == "insert" and isinstance(target, dict):
            target[draw(keys)] = draw(values)
        elif op == "insert" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(values))
        else:
            parent[last] = draw(text)
    return doc


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# Crashes already pinned by a strict xfail test elsewhere: (which inputs, what they print).
# Delete an entry when its bug is fixed (its xfail test will then XPASS and fail).
KNOWN_BUGS: list[tuple[Callable[[Any], bool], str]] = []


def _assert_exit_0_or_2(args: list[str], doc: Any = None) -> None:
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    stdout, stderr = result.stdout, result.stderr
    clean = (
        result.exit_code in (0, 2)
        and "Traceback" not in stdout + stderr
        and "internal error" not in stderr
        and (result.exception is None or isinstance(result.exception, SystemExit))
    )
    if clean:
        return
    if any(applies(doc) and re.search(signature, stderr) for applies, signature in KNOWN_BUGS):
        return
    raise AssertionError(f"exit {result.exit_code}\n{stdout}\n{stderr}\n{result.exception!r}")


def _check_document(path: Path, doc: Any) -> None:
    path.write_text(_dump(doc), encoding="utf-8")
    _assert_exit_0_or_2(["validate", str(path)], doc)
    _assert_exit_0_or_2(["plan", str(path)], doc)


@FUZZ
@given(doc=documents)
def test_random_documents_exit_0_or_2(tmp_path, doc):
    """Random nested YAML documents make validate and plan exit 0 or 2, never crash."""
    _check_document(tmp_path / "fuzz.yaml", doc)


@FUZZ
@given(doc=mutated_runbooks())
def test_mutated_runbooks_exit_0_or_2(tmp_path, doc):
    """A valid runbook with keys deleted, types swapped or strings inserted exits 0 or 2."""
    _check_document(tmp_path / "fuzz.yaml", doc)


def test_unmutated_base_runbook_is_valid(tmp_path):
    """The fuzzing base runbook itself validates and plans (exit 0)."""
    path = tmp_path / "base.yaml"
    path.write_text(_dump(VALID), encoding="utf-8")
    for args in (["validate", "--strict", str(path)], ["plan", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.stderr


SHELL_TOKENS = [*"$`;|&<>(){}[]*?!~#'\"\\ \t\n%=-", "$(rm -rf /)", "`id`", "&&", "||", "{{", "}}", "{%", "%}", "é", "💥", "a", "1"]
SHELL_META = st.lists(st.sampled_from(SHELL_TOKENS), max_size=12).map("".join)
var_names = st.one_of(st.sampled_from(["version", "region", "replicas", "db_host", "db_password"]), st.text(min_size=1, max_size=10).filter(lambda s: "=" not in s))
env_names = st.one_of(st.sampled_from(["staging", "production", "default", ""]), st.text(max_size=15), SHELL_META)


@FUZZ
@given(
    assignments=st.lists(st.tuples(var_names, st.one_of(SHELL_META, st.text(max_size=30))), max_size=4),
    env=st.one_of(st.none(), env_names),
    fmt=st.sampled_from(["text", "json", "markdown"]),
)
def test_random_vars_and_envs_exit_0_or_2(assignments, env, fmt):
    """Random --var values full of shell metacharacters and random --env names exit 0 or 2."""
    args = ["plan", str(FIXTURE), "--format", fmt]
    args += [f"--var={name}={value}" for name, value in assignments]
    if env is not None:
        args.append(f"--env={env}")
    _assert_exit_0_or_2(args)
