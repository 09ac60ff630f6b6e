"""Commands that runbook knows better than a shell line: alembic, Rails and Django migrations."""

from __future__ import annotations

import posixpath
import re

from runbook.importer.draft import TODO, DraftStep
from runbook.importer.shell import Command

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")
_RUNNERS = {("poetry", "run"), ("pipenv", "run"), ("uv", "run"), ("pdm", "run"), ("hatch", "run"), ("rye", "run"), ("bundle", "exec")}
_PYTHON = re.compile(r"python[0-9.]*")


def core(words: list[str]) -> list[str]:
    """The command itself, without ``sudo``, ``VAR=x``, ``poetry run``, ``bundle exec``, ``python -m``."""
    rest = list(words)
    while rest:
        head = posixpath.basename(rest[0])
        if _ASSIGNMENT.fullmatch(rest[0]) or head in ("time", "nohup", "exec", "command", "env", "npx"):
            rest.pop(0)
        elif head == "sudo":
            rest.pop(0)
            while rest and rest[0].startswith("-"):
                option = rest.pop(0)
                if option in ("-u", "-g", "--user", "--group") and rest:
                    rest.pop(0)
        elif len(rest) >= 2 and (head, rest[1]) in _RUNNERS:
            del rest[:2]
        elif _PYTHON.fullmatch(head) and len(rest) >= 3 and rest[1] == "-m":
            del rest[:2]
        else:
            break
    return rest


def special_step(command: Command, words: list[str], cwd: str | None) -> DraftStep | None:
    if not words:
        return None
    name = posixpath.basename(words[0])
    if name == "alembic":
        return _alembic(command, words, cwd)
    if name in ("rails", "rake") and "db:migrate" in words[1:]:
        return _rails(command)
    manage = _manage_py(words)
    if manage is not None and manage[1:2] == ["migrate"]:
        return _django(command)
    return None


def read_only(words: list[str]) -> bool:
    """Known framework commands that only look: ``rails db:migrate:status``, ``manage.py showmigrations``."""
    if posixpath.basename(words[0]) in ("rails", "rake") and words[1:2] and words[1] in ("db:migrate:status", "db:version", "routes"):
        return True
    manage = _manage_py(words)
    return manage is not None and manage[1:2] in (["showmigrations"], ["check"], ["sqlmigrate"])


def _manage_py(words: list[str]) -> list[str] | None:
    for i, word in enumerate(words[:3]):
        if posixpath.basename(word) in ("manage.py", "django-admin"):
            return words[i:]
    return None


def _alembic(command: Command, words: list[str], cwd: str | None) -> DraftStep | None:
    config: str | None = None
    i = 1
    while i < len(words) and words[i].startswith("-"):
        option = words[i]
        if option in ("-c", "--config") and i + 1 < len(words):
            config = words[i + 1]
            i += 2
        elif option.startswith("--config="):
            config = option.split("=", 1)[1]
            i += 1
        elif option in ("-n", "--name", "-x") and i + 1 < len(words):
            i += 2
        else:
            i += 1
    if i >= len(words) or words[i] not in ("upgrade", "downgrade", "stamp"):
        return None
    subcommand, args = words[i], words[i + 1 :]
    targets = [a for a in args if not a.startswith("-")]
    if "--sql" in args or len(targets) != 1:
        return None
    step = DraftStep(
        command.title or f"alembic {subcommand} {targets[0]}",
        "alembic",
        {"config": _config_path(config, cwd), "command": subcommand, "target": targets[0]},
        command.lines,
    )
    step.comments.append(
        f"{TODO}: `config` is the project's alembic.ini, relative to this runbook's directory (the checklist ran "
        f"alembic in {cwd or 'the project directory'}); check the path"
    )
    step.mentions += [command.text, *command.comments, *command.expected]
    step.action = "migrate" if subcommand == "upgrade" else subcommand
    step.dry_run = "safe"  # alembic previews offline: nothing touches the schema
    return step


def _config_path(config: str | None, cwd: str | None) -> str:
    path = config or "alembic.ini"
    if path.startswith(("/", "~")):
        return path
    if cwd and cwd.startswith(("/", "~")):
        return posixpath.join(cwd, path)
    # A runbook written to runbooks/ sits one level below the project, where commands ran.
    return posixpath.normpath(posixpath.join("..", cwd or "", path))


def _rails(command: Command) -> DraftStep:
    step = DraftStep(command.title or "rails db:migrate", "command", {"run": command.text}, command.lines)
    step.action = "migrate"
    step.dry_run = {"kind": "command", "title": "pending migrations", "run": command.text.replace("db:migrate", "db:migrate:status", 1)}
    step.rollback = {"kind": "command", "title": "roll the migrations back", "run": command.text.replace("db:migrate", "db:rollback", 1)}
    step.comments.append(f"{TODO}: db:rollback undoes one migration; add STEP=N if this deploy applies N of them")
    step.mentions += [command.text, *command.comments, *command.expected]
    return step


def _django(command: Command) -> DraftStep:
    step = DraftStep(command.title or "manage.py migrate", "command", {"run": command.text}, command.lines)
    step.action = "migrate"
    step.dry_run = {"kind": "command", "title": "migrations that would apply", "run": command.text.rstrip() + " --plan"}
    step.comments.append(
        f"{TODO}: to undo it, add `rollback: {{kind: command, run: python manage.py migrate APP PREVIOUS_MIGRATION}}`, "
        "or mark it `irreversible: true`"
    )
    step.mentions += [command.text, *command.comments, *command.expected]
    return step
