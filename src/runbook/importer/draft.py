"""What the importer builds before it writes YAML: a draft runbook, and a ledger of
which source lines became what (``--explain``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.importer.markdown import Lines

TODO = "TODO(import)"


@dataclass
class Group:
    """A step heading (``### Step 2: Run Backfill Script (2-10 minutes)``): the steps under it."""

    title: str
    number: str | None
    lines: Lines
    estimate: str | None = None
    parent: Group | None = None
    steps: list[DraftStep] = field(default_factory=list)
    description: list[tuple[Lines, str]] = field(default_factory=list)  # prose under the heading, before its steps

    def all_steps(self, groups: list[Group]) -> list[DraftStep]:
        """Its steps and those of the groups below it."""
        found = list(self.steps)
        for group in groups:
            ancestor = group.parent
            while ancestor is not None and ancestor is not self:
                ancestor = ancestor.parent
            if ancestor is self:
                found += group.steps
        return found


@dataclass
class DraftStep:
    title: str
    kind: str
    params: dict[str, Any]
    lines: Lines
    group: Group | None = None
    phase: str = "steps"  # "pre" for a pre-deployment item
    own_title: bool = False  # the author titled it (a list item, a table row), not the importer
    action: str | None = None  # a short id to prefer (migrate, backfill, deploy, ...)
    id: str = ""
    place: str = ""  # where it ends up: "steps.migrate", "rollback.revert_code.steps.git"
    needs: list[DraftStep] = field(default_factory=list)
    preconditions: list[dict[Any, Any]] = field(default_factory=list)
    gates: list[dict[Any, Any]] = field(default_factory=list)
    confirm: str | None = None
    dry_run: str | dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None
    irreversible: bool = False
    estimate: str | None = None
    hints: dict[str, str] = field(default_factory=dict)
    description: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # YAML comments written above the step
    mentions: list[str] = field(default_factory=list)  # text that shows what its output may hold


@dataclass
class Option:
    """A rollback option (``### Option 1: Revert Migration (Fast - Use if migration itself failed)``)."""

    title: str
    lines: Lines
    use_when: str | None = None
    id: str = ""
    description: list[str] = field(default_factory=list)
    steps: list[DraftStep] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


@dataclass
class Criterion:
    description: str
    lines: Lines
    check: dict[str, Any] | None = None
    code: list[str] = field(default_factory=list)


@dataclass
class Issue:
    """A troubleshooting entry: the error it is about, and what to do."""

    title: str
    lines: Lines
    advice: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)


@dataclass
class Ordering:
    """``X before Y`` stated somewhere: the step matching ``later`` needs the one matching ``earlier``."""

    earlier: str
    later: str
    lines: Lines
    earlier_number: str | None = None
    later_number: str | None = None
    consequence: str | None = None  # "this will cause `ProgrammingError: ...`": what the later step may show


@dataclass
class TimelineRow:
    label: str
    estimate: str
    lines: Lines
    note: str | None = None


@dataclass
class Draft:
    source_name: str
    name: str | None = None
    title: str | None = None
    description: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    escalation: list[dict[str, str]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    steps: list[DraftStep] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    # Checks that belong before the first deployment step (a pre-deployment item such as
    # "no long-running transactions on T"), attached once the steps are known.
    before_first_step: list[dict[Any, Any]] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)
    rollback_notes: list[str] = field(default_factory=list)  # prose of the rollback plan itself
    criteria: list[Criterion] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    orderings: list[Ordering] = field(default_factory=list)
    timeline: list[TimelineRow] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)  # top-of-file remarks
    leftovers: list[str] = field(default_factory=list)  # TODO comments at the end of the file
    uses_database: bool = False
    ledger: Ledger = field(default_factory=lambda: Ledger())

    def add_step(self, step: DraftStep) -> DraftStep:
        self.steps.append(step)
        if step.group is not None:
            step.group.steps.append(step)
        return step


@dataclass
class Entry:
    lines: Lines
    what: str
    step: DraftStep | None = None  # named by its id once ids are given


class Ledger:
    """Which source lines became what. Every line of the checklist gets an entry."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def note(self, lines: Lines, what: str, step: DraftStep | None = None) -> None:
        self.entries.append(Entry(lines, what, step))

    def covered(self) -> set[int]:
        found: set[int] = set()
        for entry in self.entries:
            found.update(range(entry.lines.first, entry.lines.last + 1))
        return found
