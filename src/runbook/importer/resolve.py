"""What can be decided only once the whole checklist is read: titles, ids, needs,
estimates, hints, success criteria checks, and the alembic steps' connection and rollback."""

from __future__ import annotations

import re
from typing import Any

from runbook.importer.draft import TODO, Draft, DraftStep, Group
from runbook.importer.sql import DB
from runbook.importer.text import Ids, action, slug, stems, step_number
from runbook.importer.yamltext import Template
from runbook.model import format_duration, parse_duration


def finish(draft: Draft) -> None:
    _group_text(draft)
    _preconditions(draft)
    _titles(draft)
    _ids(draft)
    _needs(draft)
    _estimates(draft)
    _hints(draft)
    _criteria(draft)
    _alembic(draft)


def _group_text(draft: Draft) -> None:
    for group in draft.groups:
        if not group.description:
            continue
        steps = group.all_steps(draft.groups)
        for lines, text in reversed(group.description):
            if steps:
                steps[0].description.insert(0, text)
                draft.ledger.note(lines, f"prose under {group.title!r}: the description of its first step", steps[0])
        if not steps:
            draft.description += [text for _, text in group.description]
            for lines, _ in group.description:
                draft.ledger.note(lines, "prose: part of the runbook's description")


def _preconditions(draft: Draft) -> None:
    if not draft.before_first_step or not draft.steps:
        return
    first = next((s for s in draft.steps if s.phase != "pre"), draft.steps[-1])
    first.preconditions += draft.before_first_step


def _titles(draft: Draft) -> None:
    for group in draft.groups:
        direct = [s for s in group.steps if not s.own_title]
        if len(group.steps) == 1 and direct:
            step = direct[0]
            step.title = group.title
            if step.action is None and step.kind != "manual":
                step.action = action(group.title)
        elif len(group.steps) > 1:
            for step in direct:
                step.title = f"{group.title}: {step.title}"


def _ids(draft: Draft) -> None:
    ids = Ids()
    # The steps that do the named actions first: `--only deploy` must name the deploy itself.
    for step in draft.steps:
        if step.action and (step.kind != "manual" or step.action == "backup"):
            step.id = ids.take(step.action)
    for step in draft.steps:
        if not step.id:
            step.id = ids.take(_wanted_id(step))
        step.place = f"steps.{step.id}"
    option_ids = Ids()
    for option in draft.options:
        wanted = slug(_bare(option.title))
        option.id = option_ids.take(wanted if wanted != "step" else "option")
        inner = Ids()
        for step in option.steps:
            step.id = inner.take(step.action or _wanted_id(step))
            step.place = f"rollback.{option.id}.steps.{step.id}"


def _bare(title: str) -> str:
    """A title without its ``Option 2:``/``Step 3:`` prefix, trailing parenthesis or `` - explanation``."""
    text = re.sub(r"^\s*option\s+\w+\s*[:.)-]\s*", "", title, flags=re.I)
    text = re.sub(r"\s*\([^)]*\)\s*$", "", step_number(text)[1])
    return re.sub(r"\s+[-–—]\s+.*$", "", text) or title


def _wanted_id(step: DraftStep) -> str:
    title = _bare(step.title)
    if step.kind != "manual" and action(title):
        return action(title) or ""
    return slug(title)


# ---------------------------------------------------------------- needs


def _needs(draft: Draft) -> None:
    position = {id(s): i for i, s in enumerate(draft.steps)}
    for ordering in draft.orderings:
        earlier = _target(draft, ordering.earlier, ordering.earlier_number)
        later = _target(draft, ordering.later, ordering.later_number)
        if not earlier or not later:
            draft.comments.append(f"{TODO}: the checklist says {ordering.later!r} comes after {ordering.earlier!r} (line {ordering.lines}); no step matched, add `needs:` by hand")
            continue
        for needed in _last_of_each_group(earlier):
            for step in later:
                if step is needed or needed in step.needs or needed in later:
                    continue
                if position[id(needed)] > position[id(step)]:
                    step.comments.append(f"{TODO}: the checklist says this comes after {needed.id!r}, but writes it before; reorder the steps")
                    continue
                step.needs.append(needed)
        if ordering.consequence:
            for step in later:
                step.mentions.append(ordering.consequence)


def _last_of_each_group(steps: list[DraftStep]) -> list[DraftStep]:
    """The step that finishes each group among ``steps`` (a dry run's real run, a group's last command)."""
    last: dict[int, DraftStep] = {}
    for step in steps:
        last[id(step.group) if step.group is not None else id(step)] = step
    return list(last.values())


def _target(draft: Draft, phrase: str, number: str | None) -> list[DraftStep]:
    """The steps a phrase of a stated order names: the group with that number, else the best match by words."""
    groups = [g for g in draft.groups if any(s.phase != "pre" for s in g.all_steps(draft.groups))]
    if number is not None:
        numbered = [g for g in groups if g.number == number]
        if numbered:
            return numbered[0].all_steps(draft.groups)
    wanted = stems(phrase)
    best: tuple[int, list[list[DraftStep]]] = (0, [])
    candidates = [(g.title, g.all_steps(draft.groups)) for g in groups] + [(s.title, [s]) for s in draft.steps if s.phase != "pre"]
    for title, steps in candidates:
        score = len(wanted & stems(title))
        if score > best[0]:
            best = (score, [steps])
        elif score == best[0] and score > 0 and steps not in best[1] and not any(set(map(id, steps)) <= set(map(id, b)) for b in best[1]):
            best[1].append(steps)  # "before both migrations": every group that matches as well
    return [step for steps in best[1] for step in steps]


# ---------------------------------------------------------------- estimates


def _estimates(draft: Draft) -> None:
    for row in draft.timeline:
        number, label = step_number(row.label)
        group = _group_for(draft, label, number)
        if group is None:
            draft.comments.append(f"timeline (line {row.lines}): {row.label}: {row.estimate} matches no step")
            draft.ledger.note(row.lines, "a timeline row that matches no step: a comment at the top")
            continue
        steps = group.all_steps(draft.groups)
        if group.estimate is None:
            group.estimate = row.estimate
        if steps and row.note:
            steps[0].comments.append(f"timeline: {row.label}: {row.estimate}; {row.note}")
        draft.ledger.note(row.lines, f"a timeline row: the estimate of {group.title!r}", steps[0] if steps else None)
    for group in sorted(draft.groups, key=_depth, reverse=True):
        if group.estimate is None:
            continue
        open_steps = [s for s in group.all_steps(draft.groups) if s.estimate is None]
        for step in open_steps:
            step.estimate = _share(group.estimate, len(open_steps))


def _depth(group: Group) -> int:
    depth, parent = 0, group.parent
    while parent is not None:
        depth, parent = depth + 1, parent.parent
    return depth


def _group_for(draft: Draft, label: str, number: str | None) -> Group | None:
    if number is not None:
        found = [g for g in draft.groups if g.number == number]
        if found:
            return found[0]
    wanted = stems(label)
    scored = sorted(((len(wanted & stems(g.title)), i) for i, g in enumerate(draft.groups)), reverse=True)
    if scored and scored[0][0] > 0:
        return draft.groups[scored[0][1]]
    return None


def _share(estimate: str, parts: int) -> str:
    """One of ``parts`` equal shares of ``estimate`` (``5m`` over 4 steps: ``1m15s`` each)."""
    if parts == 1:
        return estimate
    low, _, high = estimate.partition("-")
    low_share = format_duration(parse_duration(low) / parts)
    high_share = format_duration(parse_duration(high or low) / parts)
    return low_share if low_share == high_share else f"{low_share}-{high_share}"


# ---------------------------------------------------------------- hints


def _hints(draft: Draft) -> None:
    for issue in draft.issues:
        pattern = error_pattern(issue.title)
        advice = "\n".join(issue.advice).strip() or issue.title
        tokens = _tokens(issue.title)
        steps = [s for s in draft.steps if tokens and any(t.lower() in m.lower() for m in s.mentions for t in tokens)] if pattern else []
        if pattern and not steps:
            # No step shows the error; the entry may still say which kind of step it is about ("The migration waited ...").
            about = action(issue.title) or action(issue.advice[0].split(".")[0] if issue.advice else "")
            steps = [s for s in draft.steps if about and s.action == about and s.kind != "manual"]
        if not steps:
            draft.ledger.note(issue.lines, f"no step's output shows it: the entry is quoted in a {TODO} comment at the end")
            draft.leftovers.append(
                f"{TODO}: a troubleshooting entry (lines {issue.lines}) runbook could not tie to a step's output; "
                f"add it as `hints:` of the step it is about:\n{issue.title}\n{advice}"
            )
            continue
        for step in steps:
            step.hints[pattern or issue.title] = advice
        draft.ledger.note(issue.lines, "hints of " + ", ".join(s.id for s in steps))


def _tokens(title: str) -> list[str]:
    """Text an output that shows this error would contain: exception names, else the quoted words (quotes included)."""
    names = re.findall(r"\b\w+(?:Error|Exception)\b", title)
    if names:
        return names
    return [f'"{q}"' for q in re.findall(r"[\"“]([^\"”]+)[\"”]", title)]


def error_pattern(title: str) -> str | None:
    """A regex for the error a troubleshooting entry names: ``column subscriber_id does not exist``
    -> ``column "?subscriber_id"? does not exist``; a lone capital (``Subscriber X``) matches any word."""
    text = title.strip().replace("“", '"').replace("”", '"')
    whole = re.fullmatch(r'"(.+)"', text)
    if whole:
        error = whole[1]
    elif '"' in text:
        error = text[text.index('"') :]
    else:
        found = re.search(r"\b\w+(?:Error|Exception)\b.*", text)
        if found is None:
            return None
        error = found[0]
    parts = []
    for token in error.split():
        found = re.fullmatch(r'("?)(.*?)("?)([:,.;]?)', token)
        assert found is not None
        word = found[2].replace('"', "")
        if re.fullmatch(r"[A-Z]", word):
            parts.append(r"\S+" + re.escape(found[4]))
            continue
        quoted = bool(found[1] or found[3]) or bool(re.search(r"[_.]", word))
        core = re.escape(word)
        parts.append((f'"?{core}"?' if quoted else core) + re.escape(found[4]))
    pattern = " ".join(p for p in parts if p)
    try:
        re.compile(pattern)
    except re.error:
        return None
    return pattern or None


# ---------------------------------------------------------------- success criteria


def _criteria(draft: Draft) -> None:
    exclusions = {g.get("output_excludes"): g for s in draft.steps for g in s.gates if g.get("check") == "command"}
    for criterion in draft.criteria:
        revisions = [c for c in criterion.code if re.fullmatch(r"[0-9a-f]{6,40}", c)]
        if "alembic current" in criterion.description.lower() and revisions:
            criterion.check = {"check": "alembic_revision", "connection": DB, "current": revisions[0]}
            draft.uses_database = True
            draft.ledger.note(criterion.lines, "a success criterion checked with alembic_revision")
            continue
        for code in criterion.code:
            gate = exclusions.get(code.strip("\"'"))
            if gate is not None:
                criterion.check = {k: v for k, v in gate.items() if k != "name"}
                break
        draft.ledger.note(criterion.lines, "a success criterion" + (f" checked with {criterion.check['check']}" if criterion.check else ""))


# ---------------------------------------------------------------- alembic


def _alembic(draft: Draft) -> None:
    downgrades = [s.params["target"] for o in draft.options for s in o.steps if s.kind == "alembic" and s.params.get("command") == "downgrade"]
    for step in [*draft.steps, *(s for o in draft.options for s in o.steps)]:
        if step.kind != "alembic":
            continue
        if draft.uses_database:
            step.params = _with_connection(step.params)
        if step.place.startswith("steps.") and step.params.get("command") == "upgrade" and step.rollback is None:
            step.rollback = {
                "kind": "alembic",
                "title": "downgrade to the revisions the database had before this step",
                **{k: v for k, v in step.params.items() if k in ("config", "connection")},
                "command": "downgrade",
                "target": Template(f"{{{{ steps.{step.id}.outputs.from }}}}"),
            }
            if downgrades:
                step.comments.append(f"the rollback returns to the revisions recorded before the upgrade; the checklist's rollback plan downgrades to {downgrades[0]}")


def _with_connection(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        out[key] = value
        if key == "config":
            out["connection"] = DB
    return out

