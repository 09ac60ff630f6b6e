"""DDL that MySQL or MariaDB committed before a step failed, kept across attempts.

DDL there commits as it runs: when a script or a migration fails after one,
the change stays while the step counts as failed. Running the step again
(``--resume``) would stop at that same statement, whose change is already
there. So each DDL statement is noted in the step's checkpoint as soon as it
succeeds, under a group (the alembic step's migration, ``""`` for the sql
step), and on a later attempt that same statement, when it fails because its
change is already there (``mysql.already_applied``), counts as done.

Only such a statement, word for word, gets this: an edited statement runs as
written, and one whose change was undone by hand simply runs again. The
checkpoint holds a statement's SHA-256 and its masked text, never the
statement itself (``CREATE USER ... IDENTIFIED BY`` is DDL too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runbook import mysql

if TYPE_CHECKING:
    from runbook.masking import Masker
    from runbook.steps.base import Checkpoints

CHECKPOINT_KEY = "mysql_committed_ddl"


def _digest(statement: str) -> str:
    return hashlib.sha256(statement.encode("utf-8")).hexdigest()


class KeptDdl:
    """The DDL of earlier attempts (to take as done) and of this one (to keep)."""

    def __init__(self, checkpoints: Checkpoints, masker: Masker) -> None:
        self._checkpoints = checkpoints
        self._masker = masker
        data = checkpoints.load() or {}
        # group -> [{"sha256": ..., "sql": masked text}], in the order they committed
        self._groups: dict[str, list[dict[str, str]]] = {
            str(group): [{"sha256": str(e["sha256"]), "sql": str(e["sql"])} for e in entries]
            for group, entries in dict(data.get(CHECKPOINT_KEY) or {}).items()
        }
        self._earlier = {group: {e["sha256"] for e in entries} for group, entries in self._groups.items()}
        self._saved = bool(self._groups)

    @property
    def groups(self) -> dict[str, list[str]]:
        """The masked text of the statements kept, per group."""
        return {group: [e["sql"] for e in entries] for group, entries in self._groups.items() if entries}

    def kept_earlier(self, group: str, statement: str) -> bool:
        """Whether an earlier attempt committed ``statement`` and this one has not yet run it again."""
        return _digest(statement) in self._earlier.get(group, set())

    def keep(self, group: str, statement: str) -> None:
        entries = self._groups.setdefault(group, [])
        digest = _digest(statement)
        if all(e["sha256"] != digest for e in entries):
            entries.append({"sha256": digest, "sql": self._masker.mask(statement.strip())})
            self._save()

    def forget(self, group: str) -> None:
        """``group`` completed and committed: nothing of it is left half done."""
        self._earlier.pop(group, None)
        if self._groups.pop(group, None):
            self._save()

    def clear(self) -> None:
        """The step passed: nothing is left half done."""
        self._groups.clear()
        self._earlier.clear()
        if self._saved:
            self._checkpoints.save({})
            self._saved = False

    def run_again(self, group: str, statement: str, execute: Callable[[], Any]) -> tuple[Any, str | None]:
        """``(execute(), None)``; but when an earlier attempt committed this statement and
        it now fails because its change is there, ``(None, why)`` instead of failing."""
        if not self.kept_earlier(group, statement):
            return execute(), None
        self._earlier[group].discard(_digest(statement))
        try:
            return execute(), None
        except Exception as err:
            reason = mysql.already_applied(err)
            if reason is None:
                raise
            return None, reason

    def _save(self) -> None:
        self._checkpoints.save({CHECKPOINT_KEY: {group: list(entries) for group, entries in self._groups.items()}})
        self._saved = True
