"""The direct evaluator against its oracle, Jinja itself.

``runbook.direct_templates`` renders text-and-names templates without compiling
them and builds the tree of text-and-dotted-names templates without Jinja's
lexer. Both must be indistinguishable from Jinja: generated templates are
parsed and rendered both ways and must give the same tree, the same text, or
the same error.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from runbook import direct_templates
from runbook.masking import Masker, SecretText
from runbook.templating import EnvNamespace, Namespace, Placeholder, environment, render

set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "runbook-hypothesis"))

TEXT = st.sampled_from(["", "echo ", " ", "${HOME}", "{", "}", "}}", "a{b", "$(x)", "'q'", '"d"', "\n", "x\ny", "%", "#", "-", "\t", "é"])
# Weighted toward names that exist, so that most examples render to text.
NAMES = st.sampled_from(["vars"] * 6 + ["steps"] * 2 + ["env", "run", "nope", "true", "None", "not", "lipsum", "range", "x_1", "environment"])
ATTRS = st.sampled_from(["secret"] * 3 + ["a"] * 3 + ["target"] * 3 + ["b", "HOME", "target", "n", "outputs", "s1", "missing", "__class__", "_data", "upper", "if", "items", "0"])
SPACE = st.sampled_from(["", " ", " ", " ", "  ", "\t", "-", "\n"])
FILTERS = st.sampled_from([""] * 8 + ["|upper", "|shell_quote", "|shell_quote('word')", "|default('d')", "|int", "|length", "|trim", "|unquoted", "|tojson", "|e", "|nosuch", "|replace('a', 'b')", "|join(',')"])
SUBSCRIPTS = st.sampled_from([""] * 8 + ["[0]", "['a']", '["n"]', "[1:]", "[x]", ".0"])


@st.composite
def expressions(draw: Any) -> str:
    text = draw(NAMES)
    for _ in range(draw(st.integers(0, 2))):
        text += "." + draw(ATTRS)
    return text + draw(SUBSCRIPTS) + draw(FILTERS)


@st.composite
def templates(draw: Any) -> str:
    source = draw(TEXT)
    for _ in range(draw(st.integers(1, 3))):
        source += "{{" + draw(SPACE) + draw(expressions()) + draw(SPACE) + "}}" + draw(TEXT)
    return source


def _context(masker: Masker) -> dict[str, Any]:
    secret = SecretText("hunter2-secret", (masker,))
    data = {"a": {"b": "deep"}, "b": [1, "two"], "target": "prod-db", "n": "42", "items": "shadow", "0": "zero", "secret": secret}
    return {
        "vars": Namespace("vars", data),
        "steps": Placeholder("steps"),
        "env": EnvNamespace({"HOME": "/root"}, lenient=True),
        "run": {"id": "r-1", "dry_run": False},
        "x_1": ["first", {"a": "inner"}],
        "environment": "staging",
    }


def _jinja(source: str, shell: bool, context: dict[str, Any]) -> str:
    """Jinja's own parse and compile of the same source (through the same quoting)."""
    from runbook import shellquote

    env = environment()
    tree = env.parse(source)
    if shell:
        tree = shellquote.quote_template(tree)
        tree.set_environment(env)
    return "".join(env.from_string(tree).generate(context))


def _outcome(call: Any) -> tuple[str, str]:
    """The text as the run's masker shows it (so a derived secret left untainted
    shows), or the error."""
    masker = Masker(["hunter2-secret"])
    try:
        # Each side renders against a context of its own: a printed method or object
        # (``{{ run.items }}``) names its own address, in capitals after ``| upper``.
        return ("text", re.sub(r" at 0x[0-9a-f]+", " at 0x...", masker.mask(call(_context(masker))), flags=re.IGNORECASE))
    except Exception as err:  # noqa: BLE001 - comparing whatever each raises
        return (type(err).__name__, str(err))


@settings(max_examples=400, deadline=None)
@given(templates())
def test_dotted_templates_parse_to_jinjas_tree(source: str) -> None:
    env = environment()
    tree = direct_templates.parse_dotted(env, source)
    if tree is None:
        return
    assert tree == env.parse(source)


@settings(max_examples=400, deadline=None)
@given(templates(), st.booleans())
def test_direct_rendering_equals_jinjas(source: str, shell: bool) -> None:
    env = environment()
    try:
        tree = env.parse(source)
        if shell:
            from runbook import shellquote

            tree = shellquote.quote_template(tree)
    except Exception:  # noqa: BLE001 - not a template either way: nothing to compare
        return
    tree.set_environment(env)
    if direct_templates.direct(env, tree) is None:
        return
    direct = _outcome(lambda context: "".join(direct_templates.direct(env, tree).generate(context)))  # type: ignore[union-attr]
    jinja = _outcome(lambda context: _jinja(source, shell, context))
    assert direct == jinja


def test_common_templates_take_the_direct_path() -> None:
    env = environment()
    for source in ["Step 4 on {{ vars.target }}", "echo {{ steps.s3.outputs.n }} ${HOME}", "{{ vars.b[0] | upper }}"]:
        assert direct_templates.direct(env, env.parse(source)) is not None, source
    assert direct_templates.parse_dotted(env, "echo {{ vars.target }} ${HOME}") is not None


def test_render_through_the_direct_path_still_reports_where() -> None:
    outcome = _outcome(lambda context: render("x {{ vars.nope }}", context, "steps[0].run"))
    assert outcome[0] == "TemplateFailed"
    assert "steps[0].run" in outcome[1] and "vars.nope is not defined" in outcome[1]
