"""``runbook plan --format markdown`` read by a Markdown parser (markdown-it, CommonMark):
a run-time placeholder (``<steps.x.outputs.y>``) is inside a code span or block, where every
renderer shows it as written; bare, a renderer that takes ``<...>`` for HTML drops it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from runbook import commands
from runbook.render.plan import code_span, prose

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = [ROOT / "runbooks" / "subscriber-fk.yaml", ROOT / "runbooks" / "orders-customer-fk.yaml", ROOT / "tests" / "data" / "deploy-billing.yaml"]
PLACEHOLDER = re.compile(r"<steps[.\[][^<>\n]*>")


def _plan(path: Path, fmt: str) -> str:
    out: list[str] = []
    assert commands.plan(str(path), fmt=fmt, echo=out.append) == 0
    return "".join(out)


def _texts(tokens: list[Token]) -> Iterator[tuple[str, str]]:
    """(token type, content) of every leaf: text, code_inline, fence, html_inline, ..."""
    for token in tokens:
        if token.children:
            yield from _texts(token.children)
        else:
            yield token.type, token.content


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.name)
def test_every_placeholder_is_in_code(path: Path) -> None:
    """Each placeholder of the plan is in a code span or block, none in plain text or raw HTML."""
    markdown = _plan(path, "markdown")
    leaves = list(_texts(MarkdownIt("commonmark").parse(markdown)))
    in_code = [PLACEHOLDER.findall(content) for kind, content in leaves if kind in ("code_inline", "fence", "code_block")]
    bare = [(kind, content) for kind, content in leaves if kind not in ("code_inline", "fence", "code_block") and PLACEHOLDER.search(content)]
    assert not bare, bare
    # Nothing lost on the way: the Markdown shows every placeholder the text plan shows.
    assert set(PLACEHOLDER.findall(_plan(path, "text"))) <= {p for found in in_code for p in found}


def test_subscriber_fk_confirmation_stays_one_list_item() -> None:
    """A multi-line confirmation (quoting the dry run's summary) renders as one checklist item."""
    html = MarkdownIt("commonmark").render(_plan(RUNBOOKS[0], "markdown"))
    item = html[html.index("Confirm: The dry run found:"):]
    item = item[: item.index("</li>")]
    assert "<code>&lt;steps.backfill_preview.outputs.summary&gt;</code>" in item
    assert "Commit the backfill?" in item


@pytest.mark.parametrize(
    ("text", "span"),
    [("a", "`a`"), ("x `y` z", "``x `y` z``"), ("`edge`", "`` `edge` ``"), ("two\nlines", "`two lines`")],
)
def test_code_span_holds_any_backticks(text: str, span: str) -> None:
    """A code span's fence is longer than any backtick run inside it; CommonMark reads the text back."""
    assert code_span(text) == span
    rendered = MarkdownIt("commonmark").render(span)
    assert rendered.startswith("<p><code>") and rendered.endswith("</code></p>\n")


def test_prose_leaves_a_quoted_placeholder_alone() -> None:
    """A placeholder the author already put in backticks is not wrapped twice."""
    assert prose("see `<steps.a.outputs.b>` and <steps.c.outputs.d>") == "see `<steps.a.outputs.b>` and `<steps.c.outputs.d>`"
