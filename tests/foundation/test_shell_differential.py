"""The shell-quoting scanner against the shells themselves.

Generated scripts put ``{{ vars.v }}`` in every place the scanner accepts, after a
preamble of constructs it follows (quotes, comments, here-documents, ``$( )``,
line joins...). Each is rendered with hostile values and run by real ``bash -c``
and ``/bin/sh -c`` (dash); the script writes what it received with
``printf '%s\\0'`` (or ``cat`` for here-documents), and the bytes must be exactly
the value, with no file created by a payload. Every place the scanner does not
accept must be refused by ``runbook validate``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook.templating import Namespace, TemplateFailed, render

SHELLS = [shell for shell in ("bash", "/bin/sh") if shutil.which(shell)]
MARKER = "PWNED"
V = "{{ vars.v }}"

HOSTILE = [
    "; touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "x' ; touch PWNED ; '",
    'x" ; touch PWNED ; "',
    "'\"'\"'; touch PWNED",
    "\\",
    "\\'; touch PWNED; \\'",
    "a\ntouch PWNED",
    "*",
    "~",
    "~root",
    "$((1))",
    "${HOME}",
    "$HOME",
    "a,b",
    "{a,b}",
    "x=1",
    "-n",
    "",
    " ",
    "EOF",
    "\tEOF",
    "é 💥 \t tab",
    "#",
    ")",
    "( ) ; & | < >",
    "\r",
    "!!",
]

# Statements the scanner follows exactly; any sequence of them leaves the shell at a new command.
PREAMBLE = [
    "x=1; y=2\n",
    ": 'quoted ; $(not run) `not run` \" \\'\n",
    ': "a $X ${X} \\" \\$ b"\n',
    "# a comment with ' and \" and $( and `\n",
    "cat >/dev/null <<EOF\nbody $X ${X} ' \" \\$ \\` \\\\\n\tEOF-not\nEOF\n",
    "cat >/dev/null <<'EOF'\n$(not run) `not run` \\\nEOF\n",
    "cat >/dev/null <<-\"END.X\"\n\t$(not run)\n\tEND.X\n",
    ": $(echo a \"b\" 'c' ) \"$(echo ')')\"\n",
    "echo a \\\n  b >/dev/null\n",
    "echo a\\\n#not-a-comment >/dev/null\n",
    "f() { :; }; f\n",
    "( : ) && { :; } || :\n",
    "if true; then :; fi\n",
    "case a in a) : ;; esac\n",
    "echo $1 $@ $# $? $$ >/dev/null\n",
    "ls >/dev/null 2>&1 </dev/null\n",
]


@dataclass(frozen=True)
class Place:
    """A way to write the value into a script, and the bytes the script then writes."""

    script: str
    expected: Callable[[str], bytes]
    # Values the place must refuse (a line break in a here-document or a comment...).
    refuses: Callable[[str], bool] = lambda value: False


def _nul(*words: str) -> bytes:
    return b"".join(w.encode() + b"\0" for w in words)


def _has_line_break(value: str) -> bool:
    return "\n" in value or "\r" in value


PLACES = {
    "bare": Place(f"printf '%s\\0' {V}", lambda v: _nul(v)),
    "glued": Place(f"printf '%s\\0' a{V}b", lambda v: _nul(f"a{v}b")),
    "assignment": Place(f"w={V}; printf '%s\\0' \"$w\"", lambda v: _nul(v)),
    "after-tilde": Place(f"printf '%s\\0' ~{V}", lambda v: _nul(f"~{v}")),
    "after-braced-name": Place(f"printf '%s\\0' ${{X}}{V}", lambda v: _nul(f"xval{v}")),
    "single": Place(f"printf '%s\\0' 'a{V}b'", lambda v: _nul(f"a{v}b")),
    "double": Place(f'printf \'%s\\0\' "a{V}b"', lambda v: _nul(f"a{v}b")),
    "double-after-name": Place(f'printf \'%s\\0\' "$X.{V}"', lambda v: _nul(f"xval.{v}")),
    "mixed": Place(f"printf '%s\\0' \"<\"{V}'>'\"{V}\"", lambda v: _nul(f"<{v}>{v}")),
    "substitution": Place(f"printf '%s\\0' \"$(printf '%s.' {V})\"", lambda v: _nul(f"{v}.")),
    "substitution-quoted": Place(f"printf '%s\\0' \"$(printf '%s.' \"{V}\")\"", lambda v: _nul(f"{v}.")),
    "substitution-bare": Place(f"printf '%s\\0' $(printf '%s' {V} | od -An -tx1 | tr -d ' \\n')", lambda v: _nul(v.encode().hex())),
    "redirection": Place(f"printf '%s' x > {V}; printf '%s\\0' *", lambda v: _nul(v), refuses=lambda v: True),
    "heredoc": Place(f"cat <<EOF\n[{V}]\nEOF", lambda v: f"[{v}]\n".encode(), _has_line_break),
    "heredoc-alone": Place(f"cat <<EOF\n{V}\nEOF", lambda v: f"{v}\n".encode(), lambda v: _has_line_break(v) or v.lstrip("\t") in "EOF"),
    "heredoc-literal": Place(f"cat <<'EOF'\n[{V}]\nEOF", lambda v: f"[{v}]\n".encode(), _has_line_break),
    "heredoc-tabs": Place(f"cat <<-EOF\n\t[{V}]\n\tEOF", lambda v: f"[{v}]\n".encode(), _has_line_break),
    "comment": Place(f"# {V}\nprintf '%s\\0' done", lambda v: _nul("done"), _has_line_break),
    "for-loop": Place(f"printf '%s\\0' {{% for i in [1, 2] %}}{V} {{% endfor %}}", lambda v: _nul(v, v)),
    "if-branches": Place(f"printf '%s\\0' {{% if vars.v %}}'{V}'{{% else %}}\"\"{{% endif %}}", lambda v: _nul(v)),
}
# Not run: a file named by the value is a path, not a word (it may hold '/', or be empty).
del PLACES["redirection"]


def _run(shell: str, script: str, directory: Path) -> bytes:
    proc = subprocess.run(
        [shell, "-c", script], cwd=directory, env={"PATH": os.environ["PATH"], "X": "xval", "HOME": "/nonexistent"}, capture_output=True, timeout=10
    )
    assert proc.returncode == 0, (shell, script, proc.stderr.decode(errors="replace"))
    return proc.stdout


def _render(script: str, value: str) -> str:
    return render(script, {"vars": Namespace("vars", {"v": value})}, "run", shell=True)


def _check(place: Place, preamble: str, value: str) -> None:
    script = preamble + place.script
    try:
        rendered = _render(script, value)
    except TemplateFailed as err:
        if "dash" in str(err):
            _check_dash_corrupts(script, place, value)
            return
        assert place.refuses(value), f"{script!r} refused {value!r}: {err}"
        assert "cannot be placed in a shell" in str(err)
        return
    assert not place.refuses(value), f"{script!r} accepted {value!r}: {rendered!r}"
    for shell in SHELLS:
        with tempfile.TemporaryDirectory() as name:
            directory = Path(name)
            output = _run(shell, rendered, directory)
            assert not (directory / MARKER).exists(), (shell, rendered)
            assert output == place.expected(value), (shell, rendered, output)


@pytest.mark.parametrize("place", sorted(PLACES))
def test_hostile_values_arrive_literally(place: str) -> None:
    """Every hostile value reaches the command as exactly its own bytes, in every accepted place."""
    for value in HOSTILE:
        _check(PLACES[place], "", value)


values = st.one_of(st.sampled_from(HOSTILE), st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12))


@pytest.mark.slow
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(preamble=st.lists(st.sampled_from(PREAMBLE), max_size=4).map("".join), place=st.sampled_from(sorted(PLACES)), value=values)
def test_generated_scripts_deliver_values_literally(preamble: str, place: str, value: str) -> None:
    """Property: after any sequence of constructs the scanner follows, a value in any accepted
    place is one literal piece of text to bash and to /bin/sh, and no payload runs."""
    _check(PLACES[place], preamble, value)


# Places the scanner does not accept, each with a value that runs there if quoted as a bare word.
REFUSED = {
    "arithmetic-shift": f"echo size=$(( 1 << 20 ))\necho {V}",
    "arithmetic": f"echo $(( {V} ))",
    "arithmetic-command": f"(( x = 1 ))\necho {V}",
    "bash-arithmetic": f"echo $[1]\necho {V}",
    "nested-parameter-quotes": f'echo "${{UNSET:-"{V}"}}"',
    "parameter-operator": f"echo ${{UNSET:-x}} {V}",
    "parameter-pattern": f"echo ${{X%x}} {V}",
    "case-in-substitution": f'echo "$(case a in a) echo {V};; esac)"',
    "brackets-in-substitution": f"echo $( [[ a =~ (b) ]] ) {V}",
    "comment-in-substitution": f"echo $( : # ) \n) {V}",
    "nested-substitution": f"echo $( echo $( echo {V} ) )",
    "heredoc-continuation": f"cat <<EOF\na line \\\nEOF\necho {V}\nEOF",
    "heredoc-in-substitution": f"echo $(cat <<EOF\nx\nEOF\n) {V}",
    "heredoc-substitution": f"cat <<EOF\n$(echo {V})\nEOF",
    "heredoc-parameter-operator": f"cat <<EOF\n${{X:-{V}}}\nEOF",
    "heredoc-backtick": f"cat <<EOF\n`echo {V}`\nEOF",
    "heredoc-quoted-delimiter-part": f"cat <<E'O'F\n{V}\nEOF",
    "heredoc-delimiter": f"cat <<{V}\nx\n",
    "here-string": f"cat <<< {V}",
    "backtick": f"echo `echo {V}`",
    "after-backtick": f"echo `date`\necho {V}",
    "ansi-c-quotes": f"echo $'\\''\necho {V}",
    "locale-quotes": f'echo $"x"\necho {V}',
    "process-substitution": f"cat <(echo {V})",
    "after-dollar": f"echo ${V}",
    "after-name": f"echo $X{V}",
    "after-name-in-quotes": f'echo "$X{V}"',
    "after-backslash": f"echo \\{V}",
    "after-backslash-in-quotes": f'echo "\\{V}"',
    "after-unquoted-hash": f"echo {{{{ vars.v | unquoted }}}}#'\n{V}'",
    "branches-differ": f"echo {{% if vars.v %}}'{{% endif %}}{V}",
    "loop-opens-quote": f"echo {{% for i in [1] %}}'{{% endfor %}}{V}",
    "macro": f"{{% macro m() %}}{V}{{% endmacro %}}echo {{{{ m() }}}}",
    "line-break-in-quotes-before-heredoc-body": f"cat <<EOF; echo '\n'\nx\nEOF\necho {V}",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_places_not_accepted_are_refused_at_validation(cli: Callable[..., Any], write: Callable[..., Path], tmp_path: Path, case: str) -> None:
    """``runbook validate`` refuses each, located at the run key, saying how to pass the value instead."""
    doc = {"name": "r", "vars": {"v": {"default": "$(touch PWNED)"}}, "steps": [{"id": "a", "kind": "command", "run": REFUSED[case], "irreversible": True}]}
    write("rb.yaml", yaml.safe_dump(doc))
    outcome = cli("validate", "rb.yaml")
    outcome.assert_clean()
    assert outcome.exit_code == 2, (REFUSED[case], outcome.stdout)
    diagnostic = next(d for d in outcome.diagnostics if d["path"] == "steps[0].run")
    assert "env:" in diagnostic["message"], diagnostic
    run = cli("run", "rb.yaml")
    assert run.exit_code == 2 and not (tmp_path / MARKER).exists()


def _check_dash_corrupts(script: str, place: Place, value: str) -> None:
    """runbook refused a here-document line because dash would corrupt it: dash itself is the oracle.
    The value, written in unquoted (it holds nothing a here-document expands), reaches bash intact
    and dash changed."""
    assert "<<" in script and not place.refuses(value), (script, value)
    if any(c in value for c in "\\$`") or not shutil.which("dash"):
        return  # written in unquoted it would be expanded: the refusal is checked by the cases below
    plain = script.replace(V, value)
    with tempfile.TemporaryDirectory() as name:
        assert _run("bash", plain, Path(name)) == place.expected(value), plain
        assert _run("dash", plain, Path(name)) != place.expected(value), f"runbook refused {plain!r}, which dash reads as written"


@pytest.mark.parametrize(
    ("script", "value"),
    [
        (f"cat <<EOF\n{V}\nEOF", "E\u00e9"),  # the value starts the line
        (f"cat <<EOF\n{V}\nEOF", "EO\u20ac"),
        (f"cat <<EOF\n{V}\nEOF", "EOF\u00e9 tail"),  # the whole delimiter, then more
        (f"cat <<EOF\nE{V}\nEOF", "\u00e9"),  # the text starts the line, the value brings the non-ASCII
        (f"cat <<EOF\n{V}\u00e9\nEOF", "EO"),  # the value brings the delimiter's start, the text the non-ASCII
        (f"cat <<'EOF'\n{V}\nEOF", "E\u00e9"),  # a quoted delimiter too
        (f"cat <<-EOF\n\t\t{V}\n\tEOF", "E\u00e9"),  # after the tabs <<- strips
        (f"cat <<EOF\n{V}$(echo x)\nEOF", "E\u00e9"),  # a line the scanner stops in
    ],
)
def test_here_document_lines_dash_corrupts_are_refused(script: str, value: str) -> None:
    with pytest.raises(TemplateFailed, match="dash .* drops that character's first byte"):
        _render(script, value)
    text = script.replace(V, value)
    with tempfile.TemporaryDirectory() as name:
        assert _run("dash", text, Path(name)) != _run("bash", text, Path(name)), text


@pytest.mark.parametrize("line", ["x\u00e9", "\u00e9E", "Ex\u00e9", "EOFx\u00e9", "\tE\u00e9"])
def test_here_document_lines_dash_reads_as_written_are_accepted(line: str) -> None:
    """Only the lines dash corrupts are refused (a tab is a mismatch under plain <<)."""
    script = f"cat <<EOF\n{V}\nEOF"
    rendered = _render(script, line)
    with tempfile.TemporaryDirectory() as name:
        assert _run("dash", rendered, Path(name)) == f"{line}\n".encode()


def test_plain_here_document_text_dash_corrupts_is_an_error_at_validation(tmp_path: Path) -> None:
    runbook = tmp_path / "r.yaml"
    runbook.write_text("name: r\nsteps:\n  - id: a\n    kind: command\n    irreversible: true\n    run: |\n      cat <<EOF\n      E\u00e9\n      EOF\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "runbook", "validate", str(runbook)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "r.yaml:6:" in proc.stderr and "steps[0].run" in proc.stderr and "dash" in proc.stderr
