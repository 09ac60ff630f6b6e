"""Masking is linear in the length of what it masks (issue 11, item 5).

The masker used a backtracking regular expression for URL passwords: one
200 KB output line took 64 s, ``runbook plan`` of a 2 MB single-line ``run:``
more than two minutes. No wall clock is asserted here: the hostile inputs run
in a real process under a timeout some hundred times what linear work needs
on a loaded machine (the quadratic code needed hours for them), and the URL
scanner is checked against the regular expression it replaces.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook.masking import Masker, mask_url_passwords

from .conftest import _clean_env

# The expression the scanner replaces: what it matched is the specification.
URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<at>@)")
HOSTILE = """
import sys
from runbook.masking import Masker
masker = Masker(["a" * 60 + "b", "tk_9f/Q+z=x'y\\"w$v!"])
n = 2_000_000
for line in ("a" * n, "a://a:" * (n // 6), "x://u:p@ " * (n // 9), "://" * (n // 3), "a://" + "b:" * (n // 2)):
    assert len(masker.mask(line)) > 0
print("done")
"""


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "Z", "1", "+", "-", ":", "/", "@", " ", "\n", "://", "p:", "@h"]), max_size=24).map("".join))
def test_url_scanner_masks_what_the_regular_expression_masked(text: str) -> None:
    """For any text, the linear scanner gives the regex's result."""
    assert mask_url_passwords(text) == URL_PASSWORD.sub(lambda m: f"{m['scheme']}***{m['at']}", text)


def test_hostile_lines_are_masked_in_linear_time() -> None:
    """Five 2 MB lines built to make a backtracking masker quadratic are masked within a
    timeout of 120 s (linear: about 3 s on a loaded 2-core machine; before: hours)."""
    result = subprocess.run([sys.executable, "-c", HOSTILE], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "done", result.stderr


@pytest.mark.slow
def test_plan_of_huge_single_lines_is_linear(tmp_path: Path) -> None:
    """``runbook plan`` of a 2 MB single-line ``run:`` and of a 120 KB ``--var`` value used in
    one finishes within a generous timeout (before: more than 120 s and 14.5 s)."""
    body = "a" * 2_000_000
    (tmp_path / "long.yaml").write_text(f"name: long\nsteps:\n  - id: a\n    kind: command\n    run: echo {body}\n    irreversible: true\n")
    (tmp_path / "var.yaml").write_text(
        textwrap.dedent(
            """\
            name: var
            vars: {x: y, s: {secret: true, default: aaaaaaaaaaaaaaaaaaab}}
            steps:
              - {id: a, kind: command, run: "echo {{ vars.x }}", irreversible: true}
            """
        )
    )
    for args in (["long.yaml"], ["var.yaml", "--var", f"x={'a' * 120_000}"]):
        result = subprocess.run(
            [sys.executable, "-m", "runbook", "plan", *args], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=90
        )
        assert result.returncode == 0, result.stderr
        assert "a" * 100_000 in result.stdout


def test_masking_does_not_depend_on_how_output_is_split() -> None:
    """A big text is masked in blocks of lines; a secret, escaped or not, is masked wherever it falls."""
    token = "tk_9f/Q+z=x'y\"w$v!"
    masker = Masker([token])
    filler = "word " * 20_000
    text = "\n".join([filler, token, filler + token, 'json "' + token.replace('"', '\\"') + '"', filler])
    masked = masker.mask(text)
    assert token not in masked and token.replace('"', '\\"') not in masked
    assert masked.count("***") == 3
