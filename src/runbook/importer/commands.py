"""A fenced shell block -> steps.

One command step per block, with these exceptions: ``cd``, ``source
.venv/bin/activate``, ``export`` and a bare ``ssh HOST`` are folded into the
steps after them (working directory, environment, a flagged host); ``alembic
upgrade|downgrade|stamp`` becomes an ``alembic`` step; a ``--dry-run`` command
followed by the same command with ``--commit`` becomes a dry-run step and the
real one behind a confirmation; ``grep PATTERN FILE`` expected to find nothing
becomes a gate of the step; an ``# Or ...`` alternative is kept as a comment.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from runbook.importer import frameworks
from runbook.importer.draft import TODO, Draft, DraftStep, Group
from runbook.importer.markdown import Fence, Lines
from runbook.importer.shell import Command, segments, split
from runbook.importer.text import action
from runbook.importer.yamltext import Template

_NO_MATCH = re.compile(r"^(?:no\s+(?:matches|match|output|results?|lines|errors|hits)|nothing|none|empty|0\s+(?:matches|lines|results))\b", re.I)
_TAIL_FOLLOW = re.compile(r"\btail((?:\s+-[a-zA-Z0-9]+)*?)\s+(?:-f|-F|--follow(?:=\w+)?)\b")
_DRY_FLAGS = frozenset({"--dry-run", "--dryrun", "--dry_run", "--check", "--noop", "--plan", "--preview", "--what-if", "--simulate"})
_COMMIT_FLAGS = frozenset({"--commit", "--execute", "--apply", "--no-dry-run", "--confirm", "--yes", "-y", "--force"})
_READ_ONLY = frozenset(
    "grep egrep fgrep zgrep rg cat tail head less more ls df du ps free uptime whoami hostname date echo printf "
    "test [ stat wc journalctl pg_isready dig nslookup host ping id env printenv which type true".split()
)
_READ_ONLY_SUBCOMMANDS = {
    "kubectl": {"get", "describe", "logs", "top", "version"},
    "docker": {"ps", "logs", "images", "inspect", "version"},
    "git": {"status", "log", "diff", "show", "rev-parse", "describe"},
    "systemctl": {"status", "is-active", "is-enabled", "show"},
    "alembic": {"current", "history", "heads", "show", "branches"},
}


@dataclass
class Folded:
    """What the lines before a command set up for it."""

    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    host: str | None = None


@dataclass
class Context:
    draft: Draft
    group: Group | None
    in_rollback: bool = False


def steps_from_shell(fence: Fence, ctx: Context) -> list[DraftStep]:
    """The steps a shell block becomes; each of its lines is noted in the ledger."""
    block = split(fence)
    ledger = ctx.draft.ledger
    folded = Folded()
    steps: list[DraftStep] = []
    generic: list[Command] = []
    gates: list[tuple[Command, dict[str, Any]]] = []
    alternatives: list[Command] = []
    paired: dict[int, Command] = _dry_run_pairs(block.commands)
    commits = {id(c) for c in paired.values()}

    def close_generic() -> None:
        if generic:
            steps.append(_command_step(list(generic), folded, ctx))
            generic.clear()

    for command in block.commands:
        if command.alternative is not None:
            alternatives.append(command)
            continue
        core = frameworks.core(command.words())
        folding = _fold(command, core, folded)
        if folding:
            ledger.note(command.lines, folding)
            continue
        gate = _no_match_gate(command, core)
        if gate is not None and not ctx.in_rollback:
            gates.append((command, gate))
            continue
        special = frameworks.special_step(command, core, folded.cwd)
        if special is not None or id(command) in paired or id(command) in commits:
            close_generic()
            if special is None:
                special = _command_step([command], folded, ctx)
            else:
                special.group = ctx.group
                _apply_folded(special, folded, ctx)
                ledger.note(command.lines, f"an {special.kind} step" if special.kind[0] in "aeiou" else f"a {special.kind} step", special)
            if id(command) in paired:
                _make_dry_run(special, command)
            if id(command) in commits:
                _make_commit(special, steps)
            steps.append(special)
            continue
        generic.append(command)
    close_generic()
    if gates:
        if not steps:
            steps.append(_checks_only_step(gates, folded, ctx))
        for command, gate in gates:
            steps[-1].gates.append(gate)
            steps[-1].mentions += [command.text, *command.comments]
            ledger.note(command.lines, "a gate: the output may not match the pattern", steps[-1])
    for step in steps:
        if step.group is None:
            step.group = ctx.group
    if alternatives and block.trailing and block.commands[-1].alternative is not None:
        # Comments after the alternative's last command are about it ("Wait for CI/CD ...").
        alternatives[-1].expected += [comment for _, comment in block.trailing]
        alternatives[-1].lines = alternatives[-1].lines.span(Lines(block.trailing[0][0], block.trailing[-1][0]))
        block.trailing = []
    _alternatives(alternatives, steps, ctx)
    if block.output:
        first, last = block.output[0][0], block.output[-1][0]
        where = steps[-1] if steps else None
        if where is not None:
            where.description.append("Expected output:\n" + "\n".join(line for _, line in block.output))
        ledger.note(Lines(first, last), "expected output of the commands: kept in the step's description", where)
    if block.trailing:
        text = "\n".join(comment for _, comment in block.trailing)
        target = steps[-1] if steps else None
        if target is not None:
            target.description.append(text)
            ledger.note(Lines(block.trailing[0][0], block.trailing[-1][0]), "comment after the last command: the step's description", target)
    return steps


def _first_line(text: str) -> str:
    line = text.strip().split("\n")[0]
    return line if len(line) <= 72 else line[:69] + "..."


def _fold(command: Command, core: list[str], folded: Folded) -> str | None:
    """What a line that sets up the next commands does to them (None: it is a command of its own)."""
    words = command.words()
    if "\n" in command.text.strip() or len(segments(command.text)) != 1 or not words:
        return None
    if words[0] == "cd" and len(words) <= 2:
        target = words[1] if len(words) == 2 else "~"
        folded.cwd = target if folded.cwd is None or target.startswith(("/", "~")) else posixpath.join(folded.cwd, target)
        return f"the working directory of the next steps (cwd: {folded.cwd})"
    if words[0] in ("source", ".") and len(words) == 2 and words[1].endswith("bin/activate"):
        venv = posixpath.dirname(posixpath.dirname(words[1])) or "."
        if folded.cwd and not venv.startswith(("/", "~")):
            venv = posixpath.normpath(posixpath.join(folded.cwd, venv))
        folded.env["VIRTUAL_ENV"] = venv
        folded.env["PATH"] = Template(f"{venv}/bin:{{{{ env.PATH }}}}")
        return f"the environment of the next steps (VIRTUAL_ENV={venv}, PATH)"
    if words[0] == "export" and len(words) >= 2 and all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=[^$`]*", w) for w in words[1:]):
        for word in words[1:]:
            name, _, value = word.partition("=")
            folded.env[name] = value
        return "the environment of the next steps"
    if words[0] == "ssh" and len(words) >= 2 and not any(w.startswith("-") for w in words[1:]) and len(words) == 2:
        folded.host = words[1]
        return f"a {TODO} on the next steps: run them on {folded.host} with on: and an inventory"
    return None


def _apply_folded(step: DraftStep, folded: Folded, ctx: Context) -> None:
    if step.kind == "command":
        if folded.cwd:
            step.params["cwd"] = folded.cwd
        if folded.env:
            step.params["env"] = dict(folded.env)
    elif folded.env and step.kind == "alembic":
        step.comments.append(
            "alembic runs inside runbook's own Python: the packages the project's env.py imports must be installed "
            f"there (the checklist activated {folded.env.get('VIRTUAL_ENV', 'an environment')} and ran it through a wrapper)"
        )
    if folded.host:
        where = (
            f"to run it there, add `on: {folded.host}` and list {folded.host} under an environment's `hosts:` (docs/fleet.md)"
            if step.kind == "command"
            else "this kind runs where runbook runs (a database step reaches the server over its connection): check that it can"
        )
        step.comments.append(f"{TODO}: the checklist ran this on {folded.host} (`ssh {folded.host}`); {where}")


def _command_step(commands: list[Command], folded: Folded, ctx: Context) -> DraftStep:
    lines = commands[0].lines.span(commands[-1].lines)
    script: list[str] = []
    comments: list[str] = []
    for command in commands:
        script += [f"# {c}" for c in command.comments]
        text = command.text
        if _TAIL_FOLLOW.search(text):
            text = _TAIL_FOLLOW.sub(lambda m: f"tail{m[1]} -n 100", text)
            comments.append(f"{TODO}: `tail -f` follows a file forever and would never end; it reads the last 100 lines now")
        script.append(text)
        script += [f"# Expected: {e}" for e in command.expected]
        comments += [f"{TODO}: the checklist expects: {e} (from `{_first_line(command.text)}`); check it with a gate" for e in command.expected]
    first_comment = next((c.title for c in commands if c.title), None)
    title = first_comment or _first_line(commands[0].text)
    step = DraftStep(title, "command", {"run": "\n".join(script)}, lines, group=ctx.group)
    step.comments += comments
    step.mentions += [c.text for c in commands] + [e for c in commands for e in c.expected] + [x for c in commands for x in c.comments]
    step.action = next((a for a in (action(_script_words(c)) for c in commands) if a), None)
    if all(_read_only(c.text) for c in commands):
        step.dry_run = "safe"
    _apply_folded(step, folded, ctx)
    for command in commands:
        ctx.draft.ledger.note(command.lines, "run by the step", step)
    return step


def _script_words(command: Command) -> str:
    """The names in a command that say what it does: script and file names, not flags or values."""
    return " ".join(w.replace("_", " ").replace("-", " ") for w in command.words() if not w.startswith("-") and "=" not in w)


def _checks_only_step(gates: list[tuple[Command, dict[str, Any]]], folded: Folded, ctx: Context) -> DraftStep:
    first = gates[0][0]
    title = first.title or _first_line(first.text)
    step = DraftStep(title, "command", {"run": "true"}, first.lines.span(gates[-1][0].lines), group=ctx.group)
    step.dry_run = "safe"
    step.comments.append("the block's commands only check: they are this step's gates")
    step.mentions += [c.text for c, _ in gates] + [x for c, _ in gates for x in c.comments]
    return step


def _no_match_gate(command: Command, core: list[str]) -> dict[str, Any] | None:
    """``grep PATTERN FILE`` with ``# Expected: No matches`` -> a ``command`` check."""
    if not command.expected or not all(_NO_MATCH.match(e) for e in command.expected):
        return None
    if not core or core[0] not in ("grep", "egrep", "fgrep", "zgrep") or len(segments(command.text)) != 1:
        return None
    flags = [w for w in core[1:] if w.startswith("-")]
    rest = [w for w in core[1:] if not w.startswith("-")]
    if len(rest) < 2 or any(f in ("-r", "-R", "--recursive", "-v", "-L", "-l", "-c") for f in flags):
        return None
    pattern, files = rest[0], rest[1:]
    if any(f in ("-F", "--fixed-strings") for f in flags) or core[0] == "fgrep":
        pattern = re.escape(pattern)
    else:
        pattern = pattern.replace(r"\|", "|").replace(r"\(", "(").replace(r"\)", ")")
    if any(f in ("-i", "--ignore-case") for f in flags):
        pattern = "(?i)" + pattern
    try:
        re.compile(pattern)
    except re.error:
        return None
    return {
        "check": "command",
        "name": f"no match for {rest[0]} in {' '.join(files)}",
        "run": ["cat", *files],
        "output_excludes": pattern,
    }


def _dry_run_pairs(commands: list[Command]) -> dict[int, Command]:
    """Commands run with a dry-run flag, by id, mapped to the real command that follows them."""
    found: dict[int, Command] = {}
    for i, command in enumerate(commands):
        words = command.words()
        if command.alternative is not None or not _DRY_FLAGS & set(words):
            continue
        base = [w for w in words if w not in _DRY_FLAGS]
        for later in commands[i + 1 :]:
            if later.alternative is None and [w for w in later.words() if w not in _COMMIT_FLAGS] == base:
                found[id(command)] = later
                break
    return found


def _make_dry_run(step: DraftStep, command: Command) -> None:
    step.dry_run = "safe"
    step.action = f"{step.action}_dry_run" if step.action else None
    step.title = command.title or f"{step.title} (dry run)"


def _make_commit(step: DraftStep, earlier: list[DraftStep]) -> None:
    dry = next((s for s in reversed(earlier) if s.dry_run == "safe"), None)
    if dry is None:
        return
    step.needs.append(dry)
    step.confirm = "Review the output of the dry run just before; go on for real?"
    if step.dry_run == "safe":
        step.dry_run = None


def _alternatives(alternatives: list[Command], steps: list[DraftStep], ctx: Context) -> None:
    if not alternatives:
        return
    target = steps[-1] if steps else None
    lines = alternatives[0].lines.span(alternatives[-1].lines)
    text = "\n".join("\n".join([*(f"# {c}" for c in command.comments), command.text, *(f"# {e}" for e in command.expected)]) for command in alternatives)
    note = f"{TODO}: the checklist offers an alternative; the step runs the first way. The alternative:\n{text}"
    if target is not None:
        target.comments.append(note)
    else:
        ctx.draft.leftovers.append(note)
    ctx.draft.ledger.note(lines, f"an alternative ({alternatives[0].alternative}): a {TODO} comment", target)


def _read_only(text: str) -> bool:
    if re.search(r"(?<![0-9&])>(?!&)", text.replace("2>&1", "")):
        return False  # writes a file
    for words in segments(text):
        core = frameworks.core(words)
        if not core:
            return False
        name = posixpath.basename(core[0])
        if name == "tail" and any(w in ("-f", "-F", "--follow") for w in core):
            return False
        if name in _READ_ONLY:
            continue
        sub = _READ_ONLY_SUBCOMMANDS.get(name)
        if sub is not None and len(core) > 1 and core[1] in sub:
            continue
        if name == "curl" and not any(w in ("-X", "--request", "-d", "--data", "--data-raw", "-F", "--form", "-T") for w in core):
            continue
        if frameworks.read_only(core):
            continue
        return False
    return True
