"""Markdown assembled from the pieces checklists are made of, at random: the import either writes a
runbook the loader accepts, with every line explained, or refuses the checklist (exit 2). Never a crash."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook.errors import InvalidChecklist
from runbook.importer import import_checklist
from runbook.loader import load_runbook

WORDS = st.sampled_from([
    "Run", "Deploy", "migration", "backfill", "Step 2:", "Option 1:", "Rollback", "Success Criteria", "Timeline", "Troubleshooting",
    "Issue: \"ValueError: X not found\"", "Pre-Deployment", "Contact", "Related", "Communication", "(5 seconds)", "(2-10 minutes)",
    "`plan_subscriptions`", "**Risk**:", "{{ x }}", "{% endraw %}", "---", "|", "->", "→", "DO NOT deploy before migration", ":", "#", "*",
    "Expected: 0", "ünï 🚀", "\t", "[TIME]", "yes", "~", "`ls -l`", "Use if it failed",
])
LINES = st.sampled_from([
    "cd /srv/app", "source .venv/bin/activate", "ssh db-host", "export A=1", "alembic upgrade head", "alembic -c x.ini downgrade -1",
    "python x.py --dry-run", "python x.py --commit", "grep err /var/log/x.log", "# Expected: No matches", "# Or via CI", "# comment {{ x }}",
    "tail -f /var/log/x", "rails db:migrate", "python manage.py migrate app 0001", "curl -X POST https://x -d '{", "}'", "cat <<EOF", "EOF",
    "SELECT COUNT(*) FROM t WHERE c IS NULL;", "-- Expected: 0 (or small)", "-- Expected: a | YES | integer", "UPDATE t SET c = 1;",
    "SELECT column_name, is_nullable, data_type FROM information_schema.columns WHERE table_name = 't' AND column_name = 'c';",
    "$ ls", "output line", "", "\\",
])


ANY = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@st.composite
def blocks(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["heading", "paragraph", "fence", "list", "table", "rule", "html", "label"]))
    text = " ".join(draw(st.lists(st.one_of(WORDS, WORDS, ANY), min_size=1, max_size=5)))
    if kind == "heading":
        return "#" * draw(st.integers(1, 4)) + " " + text
    if kind == "fence":
        lang = draw(st.sampled_from(["bash", "sh", "sql", "", "console", "python", "text"]))
        body = "\n".join(draw(st.lists(st.one_of(LINES, LINES, ANY), max_size=6)))
        return f"```{lang}\n{body}\n```"
    if kind == "list":
        items = draw(st.lists(st.tuples(st.sampled_from(["- ", "- [ ] ", "- [x] ", "1. ", "  - [ ] ", "   "]), WORDS, LINES), min_size=1, max_size=5))
        return "\n".join(f"{marker}{word} {line}" for marker, word, line in items)
    if kind == "table":
        header = draw(st.sampled_from(["| Step | Command | Runtime | Rollback |", "| Step | Duration | Can Parallelize? |", "| Owner | Risk |", "| a |"]))
        columns = header.count("|") - 1
        rows = draw(st.lists(st.lists(st.one_of(WORDS, LINES.map(lambda s: f"`{s}`")), min_size=columns, max_size=columns), max_size=4))
        return "\n".join([header, "|" + "---|" * columns, *("| " + " | ".join(r) + " |" for r in rows)])
    if kind == "rule":
        return "---"
    if kind == "html":
        return "<!-- a note -->"
    if kind == "label":
        return f"**{text}**:"
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(blocks(), min_size=1, max_size=14), st.booleans())
def test_random_checklists_import_or_are_refused(tmp_path: Path, parts: list[str], front_matter: bool) -> None:
    text = ("---\ntitle: x\nowner: [a]\n---\n" if front_matter else "") + "\n\n".join(parts) + "\n"
    try:
        imported = import_checklist(text, source_name="fuzz.md")
    except InvalidChecklist:
        return
    load_runbook(tmp_path / "fuzz.yaml", text=imported.yaml)
    rows = [row for row in imported.explain.splitlines()[1:] if row]  # a source line's separators are shown as \u escapes
    covered: set[int] = set()
    for row in rows:
        first, _, last = row.split()[0].partition("-")
        covered.update(range(int(first), int(last or first) + 1))
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # Markdown's line breaks, not str.splitlines()'s
    assert covered == set(range(1, len(lines) - (lines[-1] == "") + 1))
