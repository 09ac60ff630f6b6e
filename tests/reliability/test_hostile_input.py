"""Hostile input: malicious runbook files, template payloads, shell metacharacters
and planted symlinks. Each is refused (or, for shell values, neutralised) in bounded
memory, with a message saying where and what, and never a traceback.

The corpus lives in ``corpus/`` (the large files are generated here). How fast each
case is refused is measured by ``bench/hostile_bench.py`` (no clock here: a loaded
2-core machine flakes wall-clock bounds); ``docs/reliability.md`` tabulates both.

Two runners: ``_process`` is a real ``python -m runbook`` that reports its own
peak RSS, for what needs a process (huge and deep files, symlinked state);
``_cli`` is click's in-process runner, optionally measuring the peak of Python
allocations (tracemalloc): fast enough for the corpus, the payload-by-place
matrix and fuzzing.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook.cli import main
from tests.foundation.test_fuzz import NASTY_STRINGS, SHELL_META

CORPUS = Path(__file__).resolve().parent / "corpus"
MARKER = "PWNED"  # every payload that would execute creates this file in its working directory
MAX_RSS_MB = 250  # a runbook process needs about 40 MB
EXIT_CODES = {0, 1, 2, 3, 4, 5}  # 5: a dry run that could not preview every step


# ---------------------------------------------------------------- runners


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    rss_mb: float = 0.0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def assert_clean(self) -> None:
        assert "Traceback" not in self.output, self.output
        assert "internal error" not in self.output, self.output


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env.update(extra or {})
    return env


# ``python -m runbook`` that records its own peak RSS (VmHWM) on exit. Measured inside:
# a parent's rusage counts the forked test process's memory as the child's peak.
_MEASURED = """
import atexit, runpy, sys
report, sys.argv = sys.argv[1], ["runbook", *sys.argv[2:]]
def _peak():
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(_peak)
runpy.run_module("runbook", run_name="__main__", alter_sys=True)
"""


def _process(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> Outcome:
    """``python -m runbook ARGS`` with its peak RSS."""
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak"
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _MEASURED, str(peak), *args],
                cwd=cwd,
                env=_env(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as err:
            raise AssertionError(f"runbook {' '.join(args)} still running after {timeout}s") from err
        rss_kb = int(peak.read_text()) if peak.exists() else 0
        return Outcome(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), rss_kb / 1024)


def _cli(*args: str, env: dict[str, str] | None = None, measure: bool = False) -> Outcome:
    """The CLI in-process, in the current directory; ``measure``: with the peak of
    memory Python allocated meanwhile (tracemalloc), as ``rss_mb``."""
    if measure:
        tracemalloc.start()
    try:
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)
        peak = tracemalloc.get_traced_memory()[1] if measure else 0
    finally:
        if measure:
            tracemalloc.stop()
    outcome = Outcome(result.exit_code, result.stdout, result.stderr, peak / 2**20)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"exception escaped the CLI: {result.exception!r}\n{outcome.output}")
    return outcome


@contextmanager
def _inside(directory: Path) -> Iterator[Path]:
    previous = Path.cwd()
    os.chdir(directory)
    try:
        yield directory
    finally:
        os.chdir(previous)


@pytest.fixture(autouse=True)
def _no_runbook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("RUNBOOK_")]:
        monkeypatch.delenv(name)


def _refused(outcome: Outcome, message: str, *, code: int = 2, where: Path | None = None) -> None:
    """Exit ``code``, ``message`` in the output, no traceback, in bounded memory, no payload ran."""
    outcome.assert_clean()
    assert outcome.code == code, (outcome.code, outcome.output)
    assert message in outcome.output, outcome.output
    assert outcome.rss_mb < MAX_RSS_MB, f"peak RSS {outcome.rss_mb:.0f} MB"
    if where is not None:
        assert not (where / MARKER).exists(), "a payload ran"


# ---------------------------------------------------------------- the corpus files

CORPUS_CASES = {
    "billion-laughs.yaml": "alias bomb",
    "billion-laughs-mappings.yaml": "alias bomb",
    "python-apply.yaml": "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
    "python-name.yaml": "tag 'tag:yaml.org,2002:python/name:os.system' is not allowed",
    "python-new.yaml": "python/object/new:subprocess.Popen' is not allowed",
    "python-module.yaml": "python/module:os' is not allowed",
    "python-tag-in-key.yaml": "mapping keys must be plain strings",
    "python-tag-in-var.yaml": "vars.v.default: tag",
    "local-tag.yaml": "tag '!pwn' is not allowed",
    "merge-key.yaml": "merge keys (<<) are not supported",
    "non-utf8.yaml": "file is not valid UTF-8 text; save it as UTF-8",
    "utf16-bom.yaml": "file is UTF-16 text",
    "utf16-no-bom.yaml": "is the file UTF-16? save it as UTF-8",
    "nul-byte.yaml": "character #x0000 is not allowed in YAML",
    "terminal-escapes.yaml": "character #x001b is not allowed in YAML",
    "escape-sequences.yaml": "control character U+001B is not allowed in a runbook",
    "carriage-return.yaml": "steps[0].run: control character U+000D is not allowed",
    "sandbox-subclasses.yaml": "access to attribute '__class__' of 'str' object is unsafe",
    "sandbox-cycler-globals.yaml": "access to attribute '__init__' of 'type' object is unsafe",
    "sandbox-self-globals.yaml": "template uses undefined name 'self'",
    "sandbox-lipsum-globals.yaml": "access to attribute '__globals__' of 'function' object is unsafe",
    "template-range-1e9.yaml": "The sandbox blocks ranges larger than MAX_RANGE (100000)",
    "template-string-bomb.yaml": "'x' * 1000000000 would build 1,000,000,000 characters",
    "template-power-bomb.yaml": "10 ** 100000000 would exceed 14,000 bits",
    # Two budgets guard a render; on a loaded machine the 2 s clock can run out
    # before the millionth iteration, and either refusal is the right one.
    "template-nested-loops.yaml": "; templates must stay small",
    "template-concat-doubling.yaml": "'~' would build",
    "template-list-doubling.yaml": "access to attribute 'extend' of 'list' object is unsafe",
    "template-center-bomb.yaml": "|center: argument 1,000,000,000 is larger than 2,097,152",
    "template-to-bytes-bomb.yaml": "to_bytes(): argument 1,000,000,000 is larger than 2,097,152",
    "template-macro-fanout.yaml": "rendering took longer than 2s",
}


def test_corpus_is_complete() -> None:
    """Every file in corpus/ has an expected outcome here, and the other way round."""
    assert sorted(p.name for p in CORPUS.glob("*.yaml")) == sorted(CORPUS_CASES)


@pytest.mark.parametrize("name", sorted(CORPUS_CASES))
def test_corpus_file_is_refused(tmp_path: Path, name: str) -> None:
    """``runbook plan`` (load, validate, render) refuses each corpus file with exit 2 and a located message."""
    shutil.copy(CORPUS / name, tmp_path / name)
    with _inside(tmp_path):
        outcome = _cli("plan", name, measure=True)
    _refused(outcome, CORPUS_CASES[name], where=tmp_path)
    assert outcome.rss_mb < 64, f"{outcome.rss_mb:.0f} MB of Python allocations"
    assert name in outcome.stderr or "steps[0] (a)" in outcome.stderr, "the message says where"


def test_python_tags_never_execute_under_any_command(tmp_path: Path) -> None:
    """validate and run (a real process) refuse ``!!python`` tags before anything could construct them."""
    for name in ("python-apply.yaml", "python-new.yaml", "python-tag-in-key.yaml"):
        shutil.copy(CORPUS / name, tmp_path / name)
        with _inside(tmp_path):
            _refused(_cli("validate", name), CORPUS_CASES[name], where=tmp_path)
    _refused(_process("run", "python-apply.yaml", cwd=tmp_path), CORPUS_CASES["python-apply.yaml"], where=tmp_path)
    assert not (tmp_path / ".runbook").exists(), "nothing was recorded for a file that does not load"


# ---------------------------------------------------------------- large, deep and odd files (generated)


def _hundred_megabytes(path: Path) -> Path:
    with path.open("wb") as f:
        f.write(b"name: big\nsteps: []\n# ")
        f.truncate(100 * 1024 * 1024)  # sparse: no disk is spent on it
    return path


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_hundred_megabyte_file_refused_by_size(tmp_path: Path, command: str) -> None:
    """A 100 MB file is refused by its size, without memory growth (bench/hostile_bench.py times it)."""
    _hundred_megabytes(tmp_path / "big.yaml")
    outcome = _process(command, "big.yaml", cwd=tmp_path)
    _refused(outcome, "big.yaml:1:1: <root>: file is 104,857,600 bytes; the limit is 2,097,152")


def test_hundred_megabyte_file_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size check comes first: the file is never opened for reading."""
    big = _hundred_megabytes(tmp_path / "big.yaml")
    opened: list[Path] = []
    original_open = Path.open

    def spy(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == big.name:
            opened.append(self)
        return original_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} read whole"))
    with _inside(tmp_path):
        outcome = _cli("validate", "big.yaml")
    assert outcome.code == 2 and "limit is 2,097,152" in outcome.stderr
    assert opened == []


DEEP = 10_000


@pytest.mark.parametrize(
    ("case", "text"),
    [
        ("10,000 nested [", "name: x\nsteps: []\nmetadata:\n  tags: " + "[" * DEEP + "]" * DEEP + "\n"),
        ("10,000 nested {", "name: x\nsteps: []\nmetadata:\n  links: " + "{a: " * DEEP + "b" + "}" * DEEP + "\n"),
        ("10,000 nested block lists", "name: x\nsteps: []\nmetadata:\n  tags:\n    " + "- " * DEEP + "x\n"),
        ("1 MB string aliased 9,000 times", "name: x\nvars:\n  v: &big " + "x" * 1_000_000 + "\nmetadata:\n  tags: [" + ", ".join(["*big"] * 9000) + "]\nsteps: []\n"),
    ],
)
def test_deep_and_expanding_documents_refused(tmp_path: Path, case: str, text: str) -> None:
    """Deep nesting stops at the parser's or our depth limit; a big aliased string at the expansion limit."""
    (tmp_path / "deep.yaml").write_text(text)
    outcome = _process("run", "deep.yaml", cwd=tmp_path)
    _refused(outcome, "deep.yaml:")
    assert any(word in outcome.stderr for word in ("nesting", "deeper than", "expands to more than")), outcome.stderr


def test_fifo_and_device_are_not_runbooks(tmp_path: Path) -> None:
    """A named pipe (which would block a reader) and a link to /dev/zero (endless) are not runbook files."""
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    for name in ("pipe.yaml", "zero.yaml"):
        outcome = _process("validate", name, cwd=tmp_path, timeout=10)
        _refused(outcome, f"runbook {name!r} not found")


def test_absurd_runbook_names(tmp_path: Path) -> None:
    """A 100,000-character name and one with a NUL byte are "not found" (exit 2), not OSErrors."""
    with _inside(tmp_path):
        for name in ("x" * 100_000, "a\x00b.yaml", "../" * 50 + "etc/passwd"):
            outcome = _cli("validate", name)
            outcome.assert_clean()
            assert outcome.code == 2, outcome.output


# ---------------------------------------------------------------- uses: definitions that leave steps/
# (tests/foundation/test_validate.py covers ../, absolute paths and a link out of steps/.)


def _uses_runbook(tmp_path: Path, uses: str) -> None:
    (tmp_path / "steps").mkdir(exist_ok=True)
    (tmp_path / "rb.yaml").write_text(f"name: x\nsteps:\n  - id: a\n    uses: {json.dumps(uses)}\n")


def test_uses_chain_of_links_leaving_steps_dir(tmp_path: Path) -> None:
    """steps/a.yaml -> steps/b.yaml -> /etc/passwd: the link chain is resolved and refused."""
    _uses_runbook(tmp_path, "a")
    (tmp_path / "steps" / "b.yaml").symlink_to("/etc/passwd")
    (tmp_path / "steps" / "a.yaml").symlink_to(tmp_path / "steps" / "b.yaml")
    with _inside(tmp_path):
        outcome = _cli("validate", "rb.yaml")
    _refused(outcome, "resolves outside")
    assert "root:" not in outcome.output


def test_uses_definition_linked_to_a_device(tmp_path: Path) -> None:
    """A definition that is a link to /dev/zero is no definition (never read)."""
    _uses_runbook(tmp_path, "zero")
    (tmp_path / "steps" / "zero.yaml").symlink_to("/dev/zero")
    outcome = _process("validate", "rb.yaml", cwd=tmp_path, timeout=10)
    _refused(outcome, "no step definition 'zero'")


def test_uses_inside_a_definition_cannot_leave_steps_dir(tmp_path: Path) -> None:
    """A definition using ``../x`` is refused like a runbook doing it, located at the using step."""
    _uses_runbook(tmp_path, "inner")
    (tmp_path / "steps" / "inner.yaml").write_text("step:\n  uses: ../outside\n")
    (tmp_path / "outside.yaml").write_text("step:\n  kind: manual\n  instruction: escaped\n")
    with _inside(tmp_path):
        outcome = _cli("plan", "rb.yaml")
    _refused(outcome, "must be a plain definition name inside steps/")
    assert "escaped" not in outcome.output


def test_python_tag_in_a_definition(tmp_path: Path) -> None:
    """A ``!!python`` tag in a step definition is refused in that file; the payload never runs."""
    _uses_runbook(tmp_path, "evil")
    (tmp_path / "steps" / "evil.yaml").write_text("step:\n  kind: manual\n  instruction: !!python/object/apply:os.system ['touch PWNED']\n")
    outcome = _process("run", "rb.yaml", cwd=tmp_path)
    _refused(outcome, "steps/evil.yaml:3:16: step.instruction: tag", where=tmp_path)


def test_very_long_uses_name(tmp_path: Path) -> None:
    """A 5,000-character definition name is "no step definition", not ENAMETOOLONG."""
    _uses_runbook(tmp_path, "a" * 5000)
    with _inside(tmp_path):
        _refused(_cli("validate", "rb.yaml"), "no step definition")


# ---------------------------------------------------------------- template payloads in every templated place

PAYLOADS = {
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler-globals": "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}",
    "self-globals": "{{ self.__init__.__globals__ }}",
    "lipsum-globals": "{{ lipsum.__globals__ }}",
    "range-1e9": "{% for x in range(10**9) %}{{ x }}{% endfor %}",
    "string-bomb": "{{ 'x' * 10**9 }}",
    "power-bomb": "{{ 10 ** 100000000 }}",
    "division-by-zero": "{{ 1 // 0 }}",
}
# What the operator is told, by payload (any one of them).
PAYLOAD_MESSAGES = {
    "subclasses": ["is unsafe"],
    "cycler-globals": ["is unsafe"],
    "self-globals": ["undefined name 'self'", "is unsafe"],
    "lipsum-globals": ["is unsafe"],
    "range-1e9": ["Range too big"],
    "string-bomb": ["would build 1,000,000,000 characters"],
    "power-bomb": ["would exceed 14,000 bits"],
    "division-by-zero": ["ZeroDivisionError: integer division or modulo by zero"],
}


def _step(**keys: Any) -> dict[str, Any]:
    return {"id": "a", "kind": "manual", "instruction": "do it", **keys}


def _cmd(**keys: Any) -> dict[str, Any]:
    return {"id": "a", "kind": "command", "run": "true", "irreversible": True, **keys}


def _place(place: str, t: str) -> tuple[dict[str, Any], list[str], set[int]]:
    """A runbook with template ``t`` in ``place``, the CLI arguments, and the exit codes that say "refused"."""
    base: dict[str, Any] = {"name": "hostile", "vars": {"v": {"default": "ok"}}, "connections": {"db": "sqlite:///db.sqlite"}}
    expression = t[2:-2].strip() if t.startswith("{{") else None
    plan, run = (["plan", "rb.yaml"], {2}), (["run", "rb.yaml", "--yes"], {1, 2})
    builders: dict[str, Any] = {
        "vars.default": lambda: ({"vars": {"v": {"default": t}}, "steps": [_step(instruction="{{ vars.v }}")]}, *plan),
        "step title": lambda: ({"steps": [_step(title=t)]}, *plan),
        "command run (shell)": lambda: ({"steps": [_cmd(run=f"echo {t}")]}, *plan),
        "command run (argv)": lambda: ({"steps": [_cmd(run=["echo", t])]}, *plan),
        "command env": lambda: ({"steps": [_cmd(env={"X": t})]}, *plan),
        "manual instruction": lambda: ({"steps": [_step(instruction=t)]}, *plan),
        "confirm": lambda: ({"steps": [_step(confirm=t)]}, *plan),
        "precondition": lambda: ({"steps": [_step(preconditions=[{"check": "file_exists", "path": t}])]}, *plan),
        "gate (command check)": lambda: ({"steps": [_cmd(gates=[{"check": "command", "run": f"test {t}"}])]}, *plan),
        "check name": lambda: ({"steps": [_step(gates=[{"check": "file_exists", "path": "x", "name": t}])]}, *plan),
        "rollback body": lambda: ({"steps": [_cmd(irreversible=False, rollback={"kind": "command", "run": t})]}, *plan),
        "dry_run body": lambda: ({"steps": [_cmd(dry_run={"kind": "command", "run": t})]}, *plan),
        "http headers": lambda: ({"steps": [{"id": "a", "kind": "http", "url": "http://127.0.0.1:1/", "headers": {"X-A": t}, "dry_run": "safe"}]}, *plan),
        "sql params": lambda: ({"steps": [{"id": "a", "kind": "sql", "connection": "db", "sql": "select :p", "params": {"p": t}, "irreversible": True}]}, *plan),
        "uses with": lambda: ({"steps": [{"id": "a", "uses": "say", "with": {"text": t}}]}, *plan),
        # Rendered only while running.
        "when": lambda: ({"steps": [_cmd(when=expression)]}, *run),
        "outputs": lambda: ({"steps": [_cmd(outputs={"o": t})]}, *run),
        "connection URL": lambda: ({"connections": {"db": t}, "steps": [{"id": "a", "kind": "sql", "connection": "db", "sql": "select 1", "irreversible": True}]}, *run),
        "success criterion": lambda: ({"steps": [_cmd()], "success_criteria": [{"description": "d", "check": {"check": "file_exists", "path": t}}]}, *run),
        "notification": lambda: ({"steps": [_cmd()], "notifications": {"messages": {"start": t}}}, ["run", "rb.yaml"], {0, 2}),
    }
    doc, args, codes = builders[place]()
    if place == "when" and expression is None:
        pytest.skip("a {% %} block is no expression")
    return {**base, **doc}, args, codes


PLACES = [
    "vars.default", "step title", "command run (shell)", "command run (argv)", "command env", "manual instruction",
    "confirm", "precondition", "gate (command check)", "check name", "rollback body", "dry_run body", "http headers", "sql params",
    "uses with", "when", "outputs", "connection URL", "success criterion", "notification",
]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_template_payload_refused_in_every_place(tmp_path: Path, payload: str, place: str) -> None:
    """Every payload, wherever a template may stand, is refused with a message naming
    the payload's problem (and where), exit 2 for plans or a failed run; nothing escapes the sandbox."""
    doc, args, codes = _place(place, PAYLOADS[payload])
    (tmp_path / "rb.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "say.yaml").write_text("params:\n  text: {type: string}\nstep:\n  kind: manual\n  instruction: '{{ params.text }}'\n")
    with _inside(tmp_path):
        outcome = _cli(*args)
    outcome.assert_clean()
    assert outcome.code in codes, (outcome.code, outcome.output)
    assert any(m in outcome.output for m in PAYLOAD_MESSAGES[payload]), outcome.output
    if place == "notification" and outcome.code == 0:  # a notification problem is a warning, never a failed run
        assert "notification 'start' not sent" in outcome.output
    assert not (tmp_path / MARKER).exists()


def test_bounds_leave_ordinary_templates_alone() -> None:
    """The limits stop bombs, not work: big numbers, long loops and joins, format widths all still render."""
    from runbook.templating import render

    cases = {
        "{{ '{}'.format(1700000000) }} {{ '%d' | format(1700000000) }} {{ {'a': 1}.get('b', 1700000000) }}": "1700000000 1700000000 1700000000",
        "{{ range(100000) | join(',') | length }}": "588889",
        "{% for i in range(100000) %}{% endfor %}{{ ('x' * 1000) | length }}": "1000",
        "{{ '%-6s|' % 'ab' }}{{ '{:>4}'.format(7) }}{{ 2 ** 64 }}": "ab    |   718446744073709551616",
        "{% set ns = namespace(s='x') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}": "1048576",
    }
    for template, expected in cases.items():
        assert render(template, {}) == expected, template


def test_plan_iterating_a_run_time_value_terminates(tmp_path: Path) -> None:
    """Planning a loop over a step's output (known only at run time) shows it symbolically;
    it used to iterate the placeholder forever (Python's __getitem__ fallback), eating memory."""
    doc = {
        "name": "loop",
        "steps": [
            _cmd(run="echo '[1, 2]'"),
            _cmd(id="b", run="echo {% for x in steps.a.outputs.json %}{{ x }} {% endfor %}{{ steps.a.outputs.json | join(',') }}"),
        ],
    }
    (tmp_path / "rb.yaml").write_text(yaml.safe_dump(doc))
    with _inside(tmp_path):
        plan = _cli("plan", "rb.yaml")
        assert plan.code == 0 and "run: echo <steps.a.outputs.json[*]> '<steps.a.outputs.json[*]>'" in plan.stdout, plan.output
        run = _cli("run", "rb.yaml")
    assert run.code == 0 and "[b] 1 2 1,2" in run.stdout, run.output


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_template_payloads_in_var_values_are_data(tmp_path: Path, payload: str) -> None:
    """A --var value or an environment variable is data, never a template: the payload is
    planned, passed and printed as the text it is, and never evaluated."""
    text = PAYLOADS[payload]
    doc = {"name": "data", "vars": {"v": {"default": "x"}, "e": {"env": "HOSTILE"}}, "steps": [_cmd(run="printf '%s|%s' {{ vars.v }} {{ vars.e }} > out")]}
    (tmp_path / "rb.yaml").write_text(yaml.safe_dump(doc))
    with _inside(tmp_path):
        plan = _cli("plan", "rb.yaml", "--var", f"v={text}", env={"HOSTILE": text})
        run = _cli("run", "rb.yaml", "--var", f"v={text}", env={"HOSTILE": text})
    for outcome in (plan, run):
        outcome.assert_clean()
        assert outcome.code == 0, outcome.output
    assert f"run: printf '%s|%s' {shlex.quote(text)} {shlex.quote(text)} > out" in plan.stdout
    assert (tmp_path / "out").read_text() == f"{text}|{text}"
    assert not (tmp_path / MARKER).exists()


# ---------------------------------------------------------------- shell metacharacters in --var values

SHELL_VALUES = [
    "; touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a\ntouch PWNED",
    "&& touch PWNED",
    "|| touch PWNED",
    "| touch PWNED",
    "> PWNED",
    "' ; touch PWNED ; '",
    '" ; touch PWNED ; "',
    "'\"'\"'; touch PWNED",
    "\\",
    "\\'; touch PWNED; \\'",
    "$HOME ${PATH} $0 $$",
    "* ? [a-z]",
    "-n",
    "",
    "  spaced  out  ",
    "é 💥 \t tab",
    "!x !! ~root",
]

# One file per way of writing a value into a command; each writes what it received to out/<id>.
QUOTING_RUNBOOK = r"""
name: quoting
vars:
  v: {default: ""}
steps:
  - id: argv
    kind: command
    run: ["sh", "-c", "printf '%s' \"$1\" > out/argv", "sh", "{{ vars.v }}"]
    irreversible: true
  - id: bare
    kind: command
    run: printf '%s' {{ vars.v }} > out/bare
    irreversible: true
  - id: single
    kind: command
    run: printf '%s' '{{ vars.v }}' > out/single
    irreversible: true
  - id: double
    kind: command
    run: printf '%s' "{{ vars.v }}" > out/double
    irreversible: true
  - id: subst
    kind: command
    run: printf '%s' "$(printf '%s.' {{ vars.v }})" > out/subst
    irreversible: true
  - id: mixed
    kind: command
    run: printf '%s' "<"{{ vars.v }}'>'"{{ vars.v }}" > out/mixed
    irreversible: true
  - id: gate
    kind: command
    run: "true"
    irreversible: true
    gates:
      - check: command
        run: test "$EXPECTED" = {{ vars.v }}
        env: {EXPECTED: "{{ vars.v }}"}
"""


def _expected_files(value: str) -> dict[str, str]:
    return {"argv": value, "bare": value, "single": value, "double": value, "subst": value + ".", "mixed": f"<{value}>{value}"}


def _run_quoting(directory: Path, value: str, runbook: str = QUOTING_RUNBOOK) -> Outcome:
    (directory / "rb.yaml").write_text(textwrap.dedent(runbook))
    (directory / "out").mkdir(exist_ok=True)
    with _inside(directory):
        return _cli("run", "rb.yaml", "--var", f"v={value}")


@pytest.mark.parametrize("value", SHELL_VALUES, ids=[repr(v)[1:-1][:24] for v in SHELL_VALUES])
def test_var_values_reach_commands_literally(tmp_path: Path, value: str) -> None:
    """A --var value is one literal argument in the argv form and in a shell string, whether
    the template stands bare, in '...', in "...", in $(...) or glued to other text: it is
    quoted for where it lands, so no metacharacter is ever interpreted."""
    outcome = _run_quoting(tmp_path, value)
    outcome.assert_clean()
    assert outcome.code == 0, outcome.output
    for step, expected in _expected_files(value).items():
        assert (tmp_path / "out" / step).read_bytes().decode() == expected, step
    assert not (tmp_path / MARKER).exists()


HEREDOC_RUNBOOK = r"""
name: heredoc
vars:
  v: {default: ""}
steps:
  - id: heredoc
    kind: command
    run: |
      cat > out/heredoc <<EOF
      [{{ vars.v }}]
      EOF
      cat > out/literal <<'EOF'
      [{{ vars.v }}]
      EOF
      cat > out/backslash <<\EOF
      [{{ vars.v }}]
      EOF
      cat > out/named <<"END-OF-TEXT"
      [{{ vars.v }}]
      END-OF-TEXT
    irreversible: true
"""


@pytest.mark.parametrize("value", [v for v in SHELL_VALUES if "\n" not in v])
def test_var_values_in_here_documents(tmp_path: Path, value: str) -> None:
    """Inside a here-document ($ and ` are escaped there; a quoted delimiter keeps everything literal)."""
    outcome = _run_quoting(tmp_path, value, HEREDOC_RUNBOOK)
    assert outcome.code == 0, outcome.output
    for name in ("heredoc", "literal", "backslash", "named"):
        assert (tmp_path / "out" / name).read_bytes().decode() == f"[{value}]\n", name
    assert not (tmp_path / MARKER).exists()


# Lines that are nothing but values (and text the delimiter could hold): with the right
# value they spell the delimiter, and the lines after them run as commands.
HEREDOC_DELIMITER_RUNBOOK = r"""
name: heredoc
vars:
  v: {default: ""}
steps:
  - id: heredoc
    kind: command
    run: "cat > out/heredoc <<-EOF\n{{ vars.v }}\nE{{ vars.v }}\nEOF\ncat > out/literal <<'EOF'\n{{ vars.v }}\nEOF\n"
    irreversible: true
"""


@pytest.mark.parametrize("value", ["a\ntouch PWNED", "EOF", "O", "\tEOF", "", "\t"])
def test_values_that_could_end_a_here_document_are_refused(tmp_path: Path, value: str) -> None:
    """A line break, or a value that could make its line the delimiter (``<<-`` strips tabs;
    an empty value makes ``E{{ v }}`` just ``E``...), could end the here-document and run what
    follows: refused with exit 2, naming the place, before anything runs."""
    runbook = HEREDOC_RUNBOOK if "\n" in value else HEREDOC_DELIMITER_RUNBOOK
    if value in ("", "\t"):
        runbook = runbook.replace("E{{ vars.v }}", "EO{{ vars.v }}F")
    outcome = _run_quoting(tmp_path, value, runbook)
    _refused(outcome, "cannot be placed in a shell here-document safely", where=tmp_path)
    assert "steps[0] (heredoc).run" in outcome.output
    assert not (tmp_path / "out" / "heredoc").exists()


@pytest.mark.parametrize("value", ["EOF", "O", "\tEOF", ""])
def test_values_that_cannot_end_a_here_document_are_placed(tmp_path: Path, value: str) -> None:
    """Where the line holds a character the delimiter lacks (``[...]``), no value can end it."""
    outcome = _run_quoting(tmp_path, value, HEREDOC_RUNBOOK)
    assert outcome.code == 0, outcome.output
    assert (tmp_path / "out" / "heredoc").read_text() == f"[{value}]\n"


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("echo `echo {{ vars.v }}`", "after a backtick (write $(...) instead)"),
        ("echo ${{ vars.v }}", "right after a $"),
        ("echo \\{{ vars.v }}", "right after a backslash"),
        ("{% macro m() %}x{% endmacro %}echo {{ m() }}", "cannot use {% macro %}"),
    ],
)
def test_templates_where_quoting_cannot_be_sure_are_refused(tmp_path: Path, run: str, message: str) -> None:
    """Where a quoted value could still be re-read by the shell, the template is refused at plan time."""
    (tmp_path / "rb.yaml").write_text(yaml.safe_dump({"name": "q", "vars": {"v": "x"}, "steps": [_cmd(run=run)]}))
    with _inside(tmp_path):
        _refused(_cli("plan", "rb.yaml"), message)


def test_plan_shows_the_quoted_command_and_unquoted_opts_out(tmp_path: Path) -> None:
    """The plan shows exactly what /bin/sh will get; ``| unquoted`` splices shell code on purpose."""
    doc = {"name": "q", "vars": {"v": "a b;c", "flags": "-l -a"}, "steps": [_cmd(run="ls {{ vars.flags | unquoted }} {{ vars.v }}")]}
    (tmp_path / "rb.yaml").write_text(yaml.safe_dump(doc))
    with _inside(tmp_path):
        outcome = _cli("plan", "rb.yaml")
    assert outcome.code == 0, outcome.output
    assert "run: ls -l -a 'a b;c'" in outcome.stdout


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=st.one_of(SHELL_META, st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20)))
def test_fuzzed_var_values_reach_commands_literally(value: str) -> None:
    """Property: for any --var value (shell metacharacters, unicode), every way of writing it
    into a command delivers it byte for byte, and no payload runs."""
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        outcome = _run_quoting(directory, value)
        outcome.assert_clean()
        assert outcome.code == 0, outcome.output
        for step, expected in _expected_files(value).items():
            assert (directory / "out" / step).read_bytes().decode() == expected, step
        assert not (directory / MARKER).exists()


# ---------------------------------------------------------------- planted symlinks

SIMPLE = "name: r\nsteps:\n  - id: a\n    kind: command\n    run: echo ran >> counter; echo hello\n    irreversible: true\n"
FAILING = "name: r\nvars:\n  code: '1'\nsteps:\n  - id: a\n    kind: command\n    run: echo ran >> counter; echo hello; exit {{ vars.code }}\n    irreversible: true\n"


def _project(tmp_path: Path, text: str = SIMPLE) -> tuple[Path, Path]:
    root, outside = tmp_path / "project", tmp_path / "outside"
    (root / "runbooks").mkdir(parents=True)
    (root / "runbooks" / "r.yaml").write_text(text)
    outside.mkdir()
    (outside / "precious").write_text("precious\n")
    return root, outside


def _untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["precious"], sorted(outside.rglob("*"))
    assert (outside / "precious").read_text() == "precious\n"


def test_state_dir_symlink_refused(tmp_path: Path) -> None:
    """A planted ``.runbook -> elsewhere`` is refused before anything runs; nothing is written there."""
    root, outside = _project(tmp_path)
    (root / ".runbook").symlink_to(outside)
    outcome = _process("run", "r.yaml", cwd=root)
    _refused(outcome, "it is a symlink", code=1)
    assert "hint: remove it" in outcome.output
    assert not (root / "counter").exists()
    _untouched(outside)


@pytest.mark.parametrize("name", ["state.db", "state.db-wal", "state.db-shm"])
def test_state_file_symlinks_are_never_written_through(tmp_path: Path, name: str) -> None:
    """``.runbook/state.db`` (and SQLite's -wal and -shm files) planted as links to a file elsewhere:
    the store refuses the first, SQLite the others (or removes the link); the target is never written."""
    root, outside = _project(tmp_path)
    (root / ".runbook").mkdir(mode=0o700)
    (root / ".runbook" / name).symlink_to(outside / "precious")
    outcome = _process("run", "r.yaml", cwd=root)
    outcome.assert_clean()
    if name == "state.db":
        _refused(outcome, "refusing to use", code=1)
        assert "a state store must be a regular file; remove the link" in outcome.output
    assert outcome.code in (0, 1)
    _untouched(outside)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_logs_dir_symlink_is_never_written_through(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    """``.runbook/logs -> elsewhere`` (or, with a PostgreSQL store, ``.runbook -> elsewhere``) must
    be refused; step logs must never be written through it."""
    root, outside = _project(tmp_path)
    env = None
    if backend == "sqlite":
        (root / ".runbook").mkdir(mode=0o700)
        (root / ".runbook" / "logs").symlink_to(outside)
    else:
        (root / ".runbook").symlink_to(outside)
        env = {"RUNBOOK_STATE_URL": request.getfixturevalue("pg_url")}
    outcome = _process("run", "r.yaml", cwd=root, env=env)
    outcome.assert_clean()
    _untouched(outside)
    assert "symlink" in outcome.output


def test_run_log_dir_symlink_on_resume_is_never_written_through(tmp_path: Path) -> None:
    """On --resume the run id is known: a planted ``.runbook/logs/<run> -> elsewhere`` must be refused."""
    root, outside = _project(tmp_path, FAILING)
    assert _process("run", "r.yaml", cwd=root).code == 1
    (run_dir,) = (root / ".runbook" / "logs").iterdir()
    shutil.rmtree(run_dir)
    run_dir.symlink_to(outside)
    outcome = _process("run", "r.yaml", "--resume", "--var", "code=0", "--accept-changes", cwd=root)
    _untouched(outside)


def _plant_log_link(tmp_path: Path) -> tuple[Path, Path, Outcome]:
    root, outside = _project(tmp_path, FAILING)
    assert _process("run", "r.yaml", cwd=root).code == 1
    (run_dir,) = (root / ".runbook" / "logs").iterdir()
    (run_dir / "a.2.log").symlink_to(outside / "precious")  # the next attempt's log
    return root, outside, _process("run", "r.yaml", "--resume", "--var", "code=0", "--accept-changes", cwd=root)


def test_log_file_symlink_is_never_written_through(tmp_path: Path) -> None:
    """A planted link at the next attempt's log path: the step is refused, the target is untouched."""
    root, outside, outcome = _plant_log_link(tmp_path)
    outcome.assert_clean()
    assert outcome.code == 3, outcome.output
    _untouched(outside)


def test_log_file_symlink_is_refused_before_the_command_runs(tmp_path: Path) -> None:
    """The refusal should come before the step's command starts, saying what to remove."""
    root, _, outcome = _plant_log_link(tmp_path)
    assert "symlink" in outcome.output and "OSError" not in outcome.output, outcome.output
    assert (root / "counter").read_text().count("ran") == 1, "the command ran although its log could not be written"


# ---------------------------------------------------------------- fuzzing the real CLI (extends tests/foundation/test_fuzz.py)

FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

COMMANDS = ["validate", "plan", "run", "approve", "rollback", "status", "history", "show", "report", "unlock", "schema", "steps", "init"]
OPTIONS = [
    "--env", "--var", "--yes", "--approve", "--dry-run", "--resume", "--from", "--only", "--accept-changes", "--log-format",
    "--format", "--strict", "--events", "--to", "--option", "--by", "--comment", "--force", "--limit", "--help", "-h",
]
ARGUMENTS = ["fuzz.yaml", "fuzz", "a", "b", "json", "md", "html", "text", "markdown", "console", "staging", "x=1", "v=$(touch PWNED)", "0", "-1", "99999999999"]
tokens = st.one_of(st.sampled_from(COMMANDS + OPTIONS + ARGUMENTS), st.sampled_from(NASTY_STRINGS[:-2]), st.text(max_size=12))

# A valid-ish runbook of harmless commands; vars and templates are drawn, so some plans fail validation.
commands = st.sampled_from(["true", "false", "echo {{ vars.v }}", "exit 3", "printf '%s' {{ vars.v }}", "echo '{{ vars.v }}'"])


@st.composite
def harmless_runbooks(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    steps: list[dict[str, Any]] = []
    for i in range(count):
        step: dict[str, Any] = {"id": f"s{i}", "kind": draw(st.sampled_from(["command", "command", "manual"]))}
        if step["kind"] == "command":
            step["run"] = draw(st.one_of(commands, st.lists(st.sampled_from(["echo", "{{ vars.v }}", "x", "$(touch PWNED)"]), min_size=1, max_size=3)))
            step[draw(st.sampled_from(["irreversible", "dry_run"]))] = draw(st.sampled_from([True, "safe", "skip"]))
        else:
            step["instruction"] = draw(st.sampled_from(["do {{ vars.v }}", "{{ vars.nope }}", "ok"]))
        if i and draw(st.booleans()):
            step["needs"] = [f"s{draw(st.integers(0, i - 1))}"]
        if draw(st.booleans()):
            step["when"] = draw(st.sampled_from(["vars.v != ''", "true", "vars.v | length > 3", "steps.s0.status == 'passed'"]))
        if draw(st.booleans()):
            step["gates"] = [{"check": "command", "run": draw(commands)}]
        if draw(st.booleans()):
            step["confirm"] = "sure about {{ vars.v }}?"
        steps.append(step)
    value = draw(st.one_of(SHELL_META, st.sampled_from(NASTY_STRINGS[:-2])))
    return {"name": "fuzz", "vars": {"v": {"default": value.replace("{", "(")}}, "steps": steps}


@settings(FUZZ, max_examples=150)
@given(argv=st.one_of(st.lists(tokens, max_size=6), st.tuples(st.sampled_from(COMMANDS), st.lists(tokens, max_size=6)).map(lambda t: [t[0], *t[1]])))
def test_random_command_lines_exit_cleanly(tmp_path: Path, argv: list[str]) -> None:
    """Any command line, against a project holding a runbook and a recorded run, exits 0-5, never a traceback."""
    project = tmp_path / "project"
    if not project.exists():
        project.mkdir()
        (project / "fuzz.yaml").write_text(yaml.safe_dump({"name": "fuzz", "vars": {"v": "x"}, "steps": [_cmd(run="echo {{ vars.v }}")]}))
        with _inside(project):
            assert _cli("run", "fuzz.yaml").code == 0
    with _inside(project):
        outcome = _cli(*argv)
    outcome.assert_clean()
    assert outcome.code in EXIT_CODES, (argv, outcome.code, outcome.output)
    assert not (project / MARKER).exists()


@settings(FUZZ, max_examples=80)
@given(doc=harmless_runbooks(), dry_run=st.booleans(), extra=st.lists(st.sampled_from(["--yes", "--var", "v=a b", "--only", "s1", "--from", "s0", "--resume"]), max_size=3))
def test_runs_of_generated_runbooks_exit_cleanly(doc: dict[str, Any], dry_run: bool, extra: list[str]) -> None:
    """``run`` (and ``run --dry-run``) of generated runbooks of harmless commands exits 0-5 (5: a dry run could not preview a step), never a traceback."""
    with tempfile.TemporaryDirectory() as name, _inside(Path(name)) as directory:
        (directory / "fuzz.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        outcome = _cli("run", "fuzz.yaml", *(["--dry-run"] if dry_run else []), *extra)
        outcome.assert_clean()
        assert outcome.code in EXIT_CODES, (outcome.code, outcome.output)
        assert not (directory / MARKER).exists()

