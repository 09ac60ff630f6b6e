"""The blocks of a section that holds steps -> steps, gates, descriptions.

A bold label on a line of its own (``**Expected Output**:``,
``**Verification**:``) says what the next block is. Shell blocks become
steps (``commands``), SQL blocks become the gates of the step before them or
``sql`` steps (``sql``), numbered and checkbox list items become steps of their
own, and prose becomes the description of the step it follows, or of the
runbook at the top of the document.
"""

from __future__ import annotations

import re

from runbook.importer import meta, precheck, tables, verification
from runbook.importer.commands import Context, steps_from_shell
from runbook.importer.draft import TODO, Draft, DraftStep, Group, Option
from runbook.importer.markdown import Block, Fence, Item, Lines, ListBlock, Other, Paragraph, Table
from runbook.importer.order import orderings
from runbook.importer.text import code_spans, dashed_label, estimate, plain, split_estimate, strong_label

SHELL = frozenset({"bash", "sh", "shell", "zsh", "ksh", "console", "shell-session", "shellsession", "terminal"})
SQL = frozenset({"sql", "postgresql", "postgres", "psql", "pgsql", "plpgsql", "mysql", "sqlite"})
TEXT = frozenset({"", "text", "txt", "output", "plain", "plaintext", "log", "logs"})
_OUTPUT_LABEL = re.compile(r"output|expected|result|response|example|sample|\blogs?\b|shows?", re.I)
_CHECK_LABEL = re.compile(r"verif|check|validat|confirm|assert", re.I)
_KNOWN_COMMAND = re.compile(
    r"^(?:\./|/|~/)?[\w.-]+(?:/[\w.-]+)*$"
)
_SHELL_WORD = re.compile(
    r"^(?:sudo\s+)?(?:\./|~/|/usr/|/opt/|/srv/|bin/|[A-Z_]+=\S*\s+)?(?:cd|export|source|kubectl|helm|docker|podman|git|systemctl|service|"
    r"psql|pg_dump|pg_restore|pg_basebackup|mysql|mysqldump|redis-cli|curl|wget|ssh|scp|rsync|cp|mv|rm|mkdir|ln|chmod|chown|tar|"
    r"gzip|cat|grep|tail|head|ls|echo|python3?|pip|poetry|uv|bundle|rails|rake|npm|npx|yarn|make|terraform|ansible-playbook|"
    r"aws|gcloud|az|alembic|vault|openssl|gitlab-\w+|ops|deploy|[\w-]+\.sh)\b"
)
_ESTIMATE_LINE = re.compile(r"^\W*(?:estimated time|estimate|expected duration|duration|time to complete|eta)\b", re.I)
_RUN_PHRASE = re.compile(r"(?:^|\b)(?:run|execute|invoke|call|verify with|check with|confirm with|using|via|with)\s*:?\s*$", re.I)


class StepsReader:
    def __init__(self, draft: Draft, group: Group | None, *, phase: str, option: Option | None = None) -> None:
        self.draft = draft
        self.group = group
        self.phase = phase  # preamble | order | pre | steps | rollback
        self.option = option  # the rollback option whose steps these are
        self.last_step: DraftStep | None = None
        self.label: str | None = None
        self.pending: list[tuple[Lines, str]] = []  # prose before the first step of the section
        self.created: list[DraftStep] = []

    # ---------------------------------------------------------------- the walk

    def read(self, blocks: list[Block]) -> None:
        for block in blocks:
            label, self.label = self.label, None
            if isinstance(block, Paragraph):
                self._paragraph(block)
            elif isinstance(block, Fence):
                self._fence(block, label)
            elif isinstance(block, ListBlock):
                self._list(block, label)
            elif isinstance(block, Table):
                self._table(block)
            else:
                self._other(block, label)

    def flush_prose(self) -> None:
        """Prose under a heading whose steps are in its subsections: it describes the group."""
        if self.pending and self.group is not None and self.phase not in ("preamble", "order"):
            self.group.description += self.pending
            self.pending = []

    def finish(self) -> None:
        if not self.pending:
            return
        group = self.group
        if group is not None and group.number is not None and not group.all_steps(self.draft.groups) and self.phase != "order":
            # A numbered step heading with only words under it: a person does what they say.
            lines = self.pending[0][0].span(self.pending[-1][0])
            step = DraftStep(group.title, "manual", {"instruction": "\n\n".join(t for _, t in self.pending)}, lines, group=group)
            step.own_title = True
            self._add(step)
            for part, _ in self.pending:
                self.draft.ledger.note(part, "the instruction of a manual step", step)
        else:
            for lines, text in self.pending:
                self.draft.description.append(text)
                self.draft.ledger.note(lines, "prose: part of the runbook's description")
        self.pending = []

    def _add(self, step: DraftStep) -> DraftStep:
        step.phase = "pre" if self.phase == "pre" else "steps"
        if self.option is not None:
            step.group = None
            self.option.steps.append(step)
        else:
            if step.group is None:
                step.group = self.group
            self.draft.add_step(step)
        self.created.append(step)
        if self.pending:
            for lines, text in self.pending:
                step.description.append(text)
                self.draft.ledger.note(lines, "prose: the description of the step after it", step)
            self.pending = []
        self.last_step = step
        return step

    def _prose(self, lines: Lines, text: str) -> None:
        if not text.strip():
            self.draft.ledger.note(lines, "nothing to translate")
        elif self.phase in ("preamble", "order"):
            self.draft.description.append(text)
            self.draft.ledger.note(lines, "prose: part of the runbook's description")
        elif self.option is not None:
            self.option.description.append(text)
            self.draft.ledger.note(lines, f"prose: the description of rollback option {self.option.title!r}")
        elif self.last_step is not None:
            self.last_step.description.append(text)
            self.draft.ledger.note(lines, "prose: the description of the step before it", self.last_step)
        else:
            self.pending.append((lines, text))

    # ---------------------------------------------------------------- paragraphs

    def _paragraph(self, paragraph: Paragraph) -> None:
        if self.phase != "pre":
            self._orderings(paragraph.text, paragraph.lines)
        text = plain(paragraph.text)
        if self.group is not None and _ESTIMATE_LINE.match(text) and estimate(text) and "\n" not in text:
            self.group.estimate = estimate(text)
            self.draft.ledger.note(paragraph.lines, f"the estimate of {self.group.title!r}: {self.group.estimate}")
            return
        if self.phase == "preamble" and self._metadata_lines(paragraph):
            return
        label = strong_label(paragraph.text)
        if label is not None and not label[1] and "\n" not in paragraph.text.strip():
            self.label = label[0]
            self.draft.ledger.note(paragraph.lines, f"the label {label[0]!r} of the block after it")
            return
        self._prose(paragraph.lines, plain(paragraph.text))

    def _metadata_lines(self, paragraph: Paragraph) -> bool:
        """``**Priority**: BLOCKER`` lines at the top: metadata; other lines of the paragraph stay prose."""
        lines = paragraph.text.split("\n")
        found = [meta.metadata_line(line) for line in lines]
        if not any(found):
            return False
        for i, (line, item) in enumerate(zip(lines, found)):
            where = Lines(paragraph.lines.first + i, paragraph.lines.first + i)
            if item is None:
                self._prose(where, plain(line))
            else:
                meta.set_metadata(self.draft, item, where)
        return True

    def _orderings(self, text: str, lines: Lines) -> None:
        found = orderings(text, lines)
        self.draft.orderings += found
        for ordering in found:
            self.draft.ledger.note(lines, f"a stated order: {ordering.later!r} needs {ordering.earlier!r}")

    # ---------------------------------------------------------------- fenced blocks

    def _fence(self, fence: Fence, label: str | None) -> None:
        lang = fence.lang
        if label is not None and _OUTPUT_LABEL.search(label) and not _CHECK_LABEL.search(label):
            self._expected_output(fence, label)
        elif lang in SHELL or (lang in TEXT and _looks_like_shell(fence.content) and self.phase != "order"):
            ctx = Context(self.draft, self.group)
            for step in steps_from_shell(fence, ctx):
                self._add(step)
            for lines in fence.fence_lines():
                self.draft.ledger.note(lines, "a fence of a shell block")
        elif lang in SQL:
            self._sql(fence, label)
        elif lang in TEXT:
            found = orderings(fence.content, fence.lines)
            if found:
                self.draft.orderings += found
                self.draft.description.append(fence.content.strip())
                self.draft.ledger.note(fence.lines, "a stated order: " + "; ".join(f"{o.later!r} needs {o.earlier!r}" for o in found))
            elif self.last_step is not None and self.phase != "order":
                self._expected_output(fence, label or "Output")
            else:
                self._prose(fence.lines, fence.content.rstrip("\n"))
        else:
            title = label or f"Run the {lang} code"
            step = DraftStep(title, "manual", {"instruction": f"{title}:\n\n{fence.content.rstrip()}"}, fence.lines)
            step.comments.append(f"{TODO}: a {lang} block; runbook cannot run it as it is: make it a command step or keep it manual")
            self._add(step)
            self.draft.ledger.note(fence.lines, f"a {lang} block: a manual step", step)

    def _expected_output(self, fence: Fence, label: str) -> None:
        if self.last_step is None:
            self._prose(fence.lines, f"{label}:\n{fence.content.rstrip()}")
        else:
            verification.expected_output(self.draft, self.last_step, fence, label)

    def _sql(self, fence: Fence, label: str | None) -> None:
        made = verification.sql_block(self.draft, self.last_step, fence, label)
        if made is not None:
            self._add(made)
            self.draft.ledger.note(fence.lines, "a sql step", made)

    # ---------------------------------------------------------------- lists

    def _list(self, block: ListBlock, label: str | None) -> None:
        actionable = block.ordered or any(i.checkbox is not None or any(isinstance(b, Fence) for b in i.blocks) for i in block.items)
        if self.phase == "rollback":
            actionable = actionable or any(_inline_command(i.text) for i in block.items)
        if self.phase != "pre" and all(not i.blocks and (strong_label(i.text) or dashed_label(i.text)) for i in block.items):
            self._labels(block)
        elif self.phase == "pre":
            for item in block.items:
                self._pre_item(item)
        elif actionable and self.phase != "order":
            for item in block.items:
                self._item(item)
        else:
            text = (f"{label}:\n" if label else "") + list_text(block)
            self._prose(block.lines, text)

    def _labels(self, block: ListBlock) -> None:
        """A list of ``**Label** - value`` items: metadata where runbook has the field, else prose."""
        for item in block.items:
            found = meta.metadata_line(item.text)
            if found is not None:
                meta.set_metadata(self.draft, found, item.lines)
            else:
                self._prose(item.lines, plain(item.text))

    def _pre_item(self, item: Item) -> None:
        check = None if item.blocks else precheck.pre_deployment_check(item)
        if check is None:
            step = self._item(item)
            if step is not None and precheck.is_backup(item.text):
                precheck.add_backup_gate(step)
            return
        self.draft.before_first_step.append(check)
        self.draft.uses_database = self.draft.uses_database or "connection" in check
        self.draft.ledger.note(item.lines, f"a precondition ({check['check']}) of the first deployment step")

    def _item(self, item: Item) -> DraftStep | None:
        text = plain(item.text)
        first_line = text.split("\n")[0].rstrip(":").strip()
        # "(15-20 minutes)" after a pre-deployment item is how long the window is, not the item.
        title, estimate = (first_line, None) if self.phase == "pre" else split_estimate(first_line)
        reader = StepsReader(self.draft, self.group, phase=self.phase if self.phase != "preamble" else "steps", option=self.option)
        reader.read([b for b in item.blocks if not isinstance(b, ListBlock)])
        created = list(reader.created)
        command = _inline_command(item.text) if not created else None
        if command is not None:
            lead = plain(item.text.split("`")[0]).rstrip(" :")
            step = DraftStep(lead if len(lead) > 3 else title, "command", {"run": command}, item.text_lines)
            created.insert(0, self._add_item_step(step, item))
        elif not created:
            instruction = "\n".join([text, *(t for _, t in reader.pending)]).strip() or title or "Manual step"
            for lines, _ in reader.pending:
                self.draft.ledger.note(lines, "part of the instruction of the manual step above")
            reader.pending = []
            step = DraftStep(title or "Manual step", "manual", {"instruction": instruction}, item.text_lines)
            created.insert(0, self._add_item_step(step, item))
        else:
            if len(created) == 1:
                created[0].title = title or created[0].title
            else:
                for step in created:
                    step.title = f"{title}: {step.title}" if title else step.title
            for step in created:
                step.own_title = True
            if "\n" in text:
                created[0].description.insert(0, text.split("\n", 1)[1])
            self.draft.ledger.note(item.text_lines, "the title of the steps it holds", created[0])
        reader.finish_into(created[-1])
        if estimate and created:
            created[-1].estimate = estimate
        self.last_step = created[-1]
        for block in item.blocks:
            if isinstance(block, ListBlock):
                self._list(block, None)
        return created[0]

    def _add_item_step(self, step: DraftStep, item: Item) -> DraftStep:
        step.own_title = True
        step.mentions.append(item.text)
        if item.checkbox:
            step.comments.append("ticked in the checklist ([x]); runbook still does it")
        self._add(step)
        what = "a command step" if step.kind == "command" else "a manual step"
        self.draft.ledger.note(item.text_lines, what, step)
        return step

    def finish_into(self, step: DraftStep) -> None:
        for lines, text in self.pending:
            step.description.append(text)
            self.draft.ledger.note(lines, "prose: the description of the step", step)
        self.pending = []

    # ---------------------------------------------------------------- the rest

    def _table(self, table: Table) -> None:
        found = meta.metadata_table(table)
        if found is not None:
            for item in found:
                meta.set_metadata(self.draft, item, table.lines)
            for name, value in (meta.other_columns(table)):
                self._prose(table.lines, f"{name}: {value}")
            return
        if tables.is_steps_table(table):
            for step in tables.steps_from_table(table, self.draft):
                self._add(step)
            self.draft.ledger.note(Lines(table.lines.first, table.rows[0].lines.first - 1 if table.rows else table.lines.last), "the header of a table of steps")
        elif tables.is_timeline_table(table):
            tables.read_timeline_table(table, self.draft)
        else:
            self._prose(table.lines, tables.table_text(table))

    def _other(self, block: Other, label: str | None) -> None:
        if block.kind == "rule":
            self.draft.ledger.note(block.lines, "a rule: layout only")
        elif block.kind == "html":
            self.draft.ledger.note(block.lines, "HTML (a comment for the checklist's authors): not part of the procedure")
        elif block.kind == "code":
            self._fence(Fence(block.lines, "", block.text, fenced=False), label)
        else:
            self._prose(block.lines, plain(block.text))


def list_text(block: ListBlock, indent: str = "") -> str:
    """A list as plain text, nested lists indented."""
    out: list[str] = []
    for i, item in enumerate(block.items):
        marker = f"{item.number or i + 1}." if block.ordered else "-"
        box = "" if item.checkbox is None else "[x] " if item.checkbox else "[ ] "
        out.append(f"{indent}{marker} {box}{plain(item.text)}".replace("\n", "\n" + indent + "  "))
        for nested in item.blocks:
            if isinstance(nested, ListBlock):
                out.append(list_text(nested, indent + "  "))
            elif isinstance(nested, Fence):
                out.append("\n".join(indent + "    " + line for line in nested.content.rstrip("\n").split("\n")))
            elif isinstance(nested, Paragraph):
                out.append(indent + "  " + plain(nested.text))
    return "\n".join(out)


def _looks_like_shell(content: str) -> bool:
    lines = [line.strip() for line in content.split("\n") if line.strip() and not line.strip().startswith("#")]
    if not lines:
        return False
    commands = sum(1 for line in lines if line.startswith("$ ") or _SHELL_WORD.match(line))
    return commands * 2 > len(lines)


def _inline_command(markdown: str) -> str | None:
    """The command of an item such as ``Run `./deploy.sh --env prod` `` (one code span after a verb)."""
    spans = code_spans(markdown)
    if len(spans) != 1:
        return None
    before = markdown.split("`")[0]
    code = spans[0]
    words = code.split()
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
        words.pop(0)
    if len(words) < 2 or not _KNOWN_COMMAND.match(words[0]) or (words[0].startswith("/") and "/" not in words[0][1:]):
        return None
    lead = plain(before)
    if not _RUN_PHRASE.search(lead) and not lead.endswith(":") and not re.match(r"^\s*(?:run|execute)\b", lead, re.I):
        return None
    return code
