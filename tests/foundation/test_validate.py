"""``runbook validate``: one test per kind of problem, checking the message,
its ``FILE:LINE:COL`` and exit code 2, and that no traceback reaches the operator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Outcome = Any  # conftest.Outcome

RB = "rb.yaml"


@pytest.fixture
def check(cli: Callable[..., Outcome], write: Callable[..., Path]) -> Callable[..., Outcome]:
    """Write ``rb.yaml``, validate it in-process, and assert the run was clean."""

    def run(text: str | bytes, *args: str, code: int = 2) -> Outcome:
        write(RB, text)
        outcome = cli("validate", RB, *args)
        outcome.assert_clean()
        assert outcome.exit_code == code, (outcome.exit_code, outcome.stdout, outcome.stderr)
        return outcome

    return run


def only(outcome: Outcome) -> dict[str, str]:
    """The single diagnostic of an outcome (fails if there are more or none)."""
    diags = [d for d in outcome.diagnostics if "warning:" not in d["message"]]
    assert len(diags) == 1, outcome.stderr
    return diags[0]


def find(outcome: Outcome, fragment: str) -> dict[str, str]:
    """The diagnostic whose message contains ``fragment``."""
    hits = [d for d in outcome.diagnostics if fragment in d["message"]]
    assert hits, f"no diagnostic with {fragment!r} in:\n{outcome.stderr}"
    return hits[0]


def at(diag: dict[str, str], line: int, col: int, path: str, file: str = RB) -> None:
    assert (diag["file"], int(diag["line"]), int(diag["col"]), diag["path"]) == (file, line, col, path), diag


# ---------------------------------------------------------------- syntax and keys


def test_yaml_syntax_error(check):
    """A YAML syntax error is reported at the offending line and column."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: manual
            instruction: one: two
        """
    )
    diag = only(out)
    at(diag, 5, 21, "<root>")
    assert diag["message"].startswith("YAML syntax error: mapping values are not allowed")
    assert out.stderr.rstrip().endswith("1 error(s)")


def test_unknown_top_level_key(check):
    """An unknown top-level key is named, located, and a close key suggested."""
    out = check(
        """
        name: x
        stepz: []
        steps: []
        """
    )
    diag = only(out)
    at(diag, 2, 1, "stepz")
    assert diag["message"] == "unknown key 'stepz'; did you mean 'steps'?"


def test_unknown_step_key_did_you_mean(check):
    """An unknown key in a step is located at the key and suggests the right one."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: manual
            instruction: hi
            titel: Hello
        """
    )
    diag = only(out)
    at(diag, 6, 5, "steps[0].titel")
    assert diag["message"] == "unknown key 'titel' for a manual step; did you mean 'title'?"


def test_unknown_check_key(check):
    """An unknown key in a check names the check kind and suggests the right key."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: manual
            instruction: hi
            preconditions:
              - check: file_exists
                path: /srv/x
                min_sise: 10
        """
    )
    diag = only(out)
    at(diag, 9, 9, "steps[0].preconditions[0].min_sise")
    assert diag["message"] == "unknown key 'min_sise' for a file_exists check; did you mean 'min_size'?"


@pytest.mark.parametrize(
    ("key_line", "path", "message"),
    [
        ("irreversible: maybe", "steps[0].irreversible", "Input should be a valid boolean"),
        ("needs: 5", "steps[0].needs", "Input should be a valid list"),
        ("estimate: soon", "steps[0].estimate", "expected a duration such as 30s, 5m or 1h, got 'soon'"),
        ("on_failure: explode", "steps[0].on_failure", "Input should be 'halt' or 'rollback' (got 'explode')"),
    ],
)
def test_wrong_type(check, key_line, path, message):
    """A value of the wrong type is reported at its key with what was expected."""
    out = check(
        f"""
        name: x
        steps:
          - id: a
            kind: manual
            instruction: hi
            {key_line}
        """
    )
    diag = only(out)
    at(diag, 6, 5, path)
    assert message in diag["message"]


def test_wrong_type_of_steps(check):
    """``steps`` given as a mapping instead of a list is an error at its key."""
    diag = only(check("name: x\nsteps: {}\n"))
    at(diag, 2, 1, "steps")
    assert diag["message"] == "Input should be a valid list"


def test_duplicate_step_ids(check):
    """The second step with an id already used is reported at its ``id``."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: manual
            instruction: one
          - id: a
            kind: manual
            instruction: two
        """
    )
    diag = only(out)
    at(diag, 6, 5, "steps[1].id")
    assert diag["message"] == "duplicate step id 'a'"


def test_needs_unknown_step(check):
    """``needs`` naming no step is an error at that list item, with a suggestion."""
    out = check(
        """
        name: x
        steps:
          - id: backup
            kind: manual
            instruction: one
          - id: migrate
            kind: manual
            instruction: two
            needs: [bakup]
        """
    )
    diag = only(out)
    at(diag, 9, 13, "steps[1].needs[0]")
    assert diag["message"] == "needs unknown step 'bakup'; did you mean 'backup'?"


def test_needs_later_step(check):
    """``needs`` naming a step written later is refused: steps run in written order."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: manual
            instruction: one
            needs:
              - b
          - id: b
            kind: manual
            instruction: two
        """
    )
    diag = only(out)
    at(diag, 7, 9, "steps[0].needs[0]")
    assert diag["message"] == "needs 'b', which is not an earlier step; steps run in the order written"


# ---------------------------------------------------------------- uses: step definitions

BACKUP_DEFINITION = """
description: Take a backup
params:
  target:
    type: string
    description: where the dump goes
  keep:
    type: integer
    default: 3
step:
  kind: command
  run: backup --to {{ params.target }} --keep {{ params.keep }}
  irreversible: true
"""


def test_uses_cycle(check, write):
    """Two definitions that use each other are reported as a cycle, not a hang or a crash."""
    write("steps/alpha.yaml", "description: a\nstep:\n  uses: beta\n")
    write("steps/beta.yaml", "description: b\nstep:\n  uses: alpha\n")
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: alpha
        """
    )
    diag = find(out, "cycle")
    at(diag, 4, 5, "steps[0].uses")
    assert diag["message"] == "'uses' cycle: alpha -> beta -> alpha"


@pytest.mark.parametrize("name", ["../x", "../../etc/passwd", "/etc/passwd", "sub/../../x"])
def test_uses_path_escaping_steps_dir(check, write, tmp_path, name):
    """``uses:`` with a path is refused; nothing outside steps/ is read."""
    write("steps/ok.yaml", BACKUP_DEFINITION)
    write("x.yaml", "description: outside\nstep:\n  kind: manual\n  instruction: escaped\n")
    out = check(
        f"""
        name: x
        steps:
          - id: a
            uses: "{name}"
        """
    )
    diag = find(out, "must be a plain definition name")
    at(diag, 4, 5, "steps[0].uses")
    assert diag["message"] == f"'uses: {name}' must be a plain definition name inside steps/, not a path"
    assert "escaped" not in out.stdout + out.stderr


def test_with_missing_parameter(check, write):
    """A required definition parameter left out of ``with`` is named, with its description."""
    write("steps/backup.yaml", BACKUP_DEFINITION)
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: backup
            with:
              keep: 5
        """
    )
    diag = find(out, "needs parameter")
    at(diag, 5, 5, "steps[0].with")
    assert diag["message"] == "'backup' needs parameter 'target' (where the dump goes)"


def test_with_missing_parameter_is_the_only_error(check, write):
    """A missing ``with`` parameter is reported once, without follow-on template errors."""
    write("steps/backup.yaml", BACKUP_DEFINITION)
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: backup
        """
    )
    assert only(out)["message"] == "'backup' needs parameter 'target' (where the dump goes)"


def test_with_unknown_parameter(check, write):
    """A ``with`` key the definition does not declare is an error with a suggestion."""
    write("steps/backup.yaml", BACKUP_DEFINITION)
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: backup
            with:
              target: /backups
              kepp: 5
        """
    )
    diag = only(out)
    at(diag, 7, 7, "steps[0].with.kepp")
    assert diag["message"] == "'backup' has no parameter 'kepp'; did you mean 'keep'?"


def test_with_parameters_expand_into_a_valid_step(check, write):
    """A definition used with all its parameters validates (the control for the tests above)."""
    write("steps/backup.yaml", BACKUP_DEFINITION)
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: backup
            with: {target: /backups}
        """,
        code=0,
    )
    assert "valid (1 steps, 0 warning(s))" in out.stdout


def test_symlinked_definition_outside_steps_dir(check, write, tmp_path):
    """A definition in steps/ that is a symlink to a file outside steps/ is refused."""
    outside = write("elsewhere/evil.yaml", "description: evil\nstep:\n  kind: manual\n  instruction: followed the link\n")
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "evil.yaml").symlink_to(outside)
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: evil
        """
    )
    diag = find(out, "resolves outside")
    at(diag, 4, 5, "steps[0].uses")
    assert "refusing to follow the link" in diag["message"]
    assert "followed the link" not in out.stdout + out.stderr


# ---------------------------------------------------------------- kinds


def test_unknown_step_kind(check):
    """An unknown step kind is reported at ``kind`` with the closest known kind."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: comand
            run: ls
        """
    )
    diag = only(out)
    at(diag, 4, 5, "steps[0].kind")
    assert diag["message"] == "unknown step kind 'comand'; did you mean 'command'?"


def test_unknown_check_kind(check):
    """An unknown check kind is reported at ``check`` with the closest known kind."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: manual
            instruction: hi
            gates:
              - check: file_exist
                path: /srv/x
        """
    )
    diag = only(out)
    at(diag, 7, 9, "steps[0].gates[0].check")
    assert diag["message"] == "unknown check kind 'file_exist'; did you mean 'file_exists'?"


# ---------------------------------------------------------------- templates


def test_undefined_template_var(check):
    """A template reading an undeclared var is an error (with a suggestion when one is close)."""
    out = check(
        """
        name: x
        vars:
          region: eu
        steps:
          - id: a
            kind: manual
            instruction: "deploy to {{ vars.nope }} in {{ vars.regoin }}"
        """
    )
    assert len(out.diagnostics) == 2, out.stderr
    first, second = out.diagnostics
    at(first, 7, 5, "steps[0].instruction")
    at(second, 7, 5, "steps[0].instruction")
    assert first["message"] == "template uses undefined var 'nope'"
    assert second["message"] == "template uses undefined var 'regoin'; did you mean 'region'?"


def test_template_reads_later_step_outputs(check):
    """A template reading the outputs of a step that runs later is refused."""
    out = check(
        """
        name: x
        steps:
          - id: announce
            kind: manual
            instruction: "revision {{ steps.migrate.outputs.rev }} is live"
          - id: migrate
            kind: command
            run: ./migrate.sh
            irreversible: true
            outputs:
              rev: "{{ result.stdout }}"
        """
    )
    diag = only(out)
    at(diag, 5, 5, "steps[0].instruction")
    assert diag["message"] == "template reads 'steps.migrate', which is not an earlier step"


def test_template_reading_earlier_step_outputs_is_valid(check):
    """Reading an earlier step's outputs is allowed (the control for the test above)."""
    out = check(
        """
        name: x
        steps:
          - id: migrate
            kind: command
            run: ./migrate.sh
            irreversible: true
            outputs:
              rev: "{{ result.stdout }}"
          - id: announce
            kind: manual
            instruction: "revision {{ steps.migrate.outputs.rev }} is live"
        """,
        code=0,
    )
    assert out.diagnostics == []


def test_jinja_syntax_error(check):
    """A Jinja syntax error in a template is reported at its key."""
    out = check(
        """
        name: x
        vars:
          v: 1
        steps:
          - id: a
            kind: manual
            instruction: "value {{ vars.v "
        """
    )
    diag = only(out)
    at(diag, 7, 5, "steps[0].instruction")
    assert diag["message"].startswith("template syntax error: unexpected end of template")


def test_jinja_block_syntax_error(check):
    """An unclosed ``{% if %}`` block is a template syntax error."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: manual
            instruction: "{% if environment == 'prod' %}careful"
        """
    )
    diag = only(out)
    at(diag, 5, 5, "steps[0].instruction")
    assert diag["message"].startswith("template syntax error:")


# ---------------------------------------------------------------- expect


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        (">", "expectation '>' needs a value after '>'"),
        ("> > 1", "expectation '> > 1' is not understood; write it like == 0, > 0, is null or == 'x'"),
        ("is null 5", "nothing may follow 'is null' in expectation 'is null 5'"),
        ("in 5", "'in' needs a list such as in (1, 2) or in ['a', 'b'], got '5'"),
        ("matches '(x'", "bad regular expression in \"matches '(x'\""),
    ],
)
def test_bad_expect_expression(check, expect, message):
    """An ``expect`` that cannot be parsed is an error at the ``expect`` key."""
    out = check(
        f"""
        name: x
        connections:
          db: sqlite://
        steps:
          - id: a
            kind: manual
            instruction: hi
            gates:
              - check: sql
                connection: db
                query: select count(*) from t
                expect: "{expect}"
        """
    )
    diag = only(out)
    at(diag, 12, 9, "steps[0].gates[0].expect")
    assert diag["message"].startswith(message), diag["message"]


def test_expect_with_misspelt_operator(check):
    """An ``expect`` that starts with an operator typo such as ``=>`` is an error, not a string to compare."""
    out = check(
        """
        name: x
        connections:
          db: sqlite://
        steps:
          - id: a
            kind: manual
            instruction: hi
            gates:
              - check: sql
                connection: db
                query: select count(*) from t
                expect: "=> 1"
        """
    )
    at(only(out), 12, 9, "steps[0].gates[0].expect")


# ---------------------------------------------------------------- reversibility

UNGUARDED = """
name: x
steps:
  - id: wipe
    kind: command
    run: rm -rf /srv/cache
  - id: note
    kind: command
    run: echo done
    irreversible: true
"""


def test_data_changing_step_without_rollback_warns(check):
    """A data-changing step with neither rollback nor irreversible is a warning; exit 0."""
    out = check(UNGUARDED, code=0)
    diag = only_warning(out)
    at(diag, 3, 5, "steps[0]")
    assert diag["message"] == "warning: step 'wipe' may change data but has neither 'rollback' nor 'irreversible: true'"
    assert "valid (2 steps, 1 warning(s))" in out.stdout


def test_data_changing_step_without_rollback_fails_under_strict(check):
    """Under ``--strict`` the same warning is an error and the exit code is 2."""
    out = check(UNGUARDED, "--strict")
    diag = only(out)
    at(diag, 3, 5, "steps[0]")
    assert diag["message"] == "step 'wipe' may change data but has neither 'rollback' nor 'irreversible: true' (--strict)"
    assert out.stderr.rstrip().endswith("1 error(s)")


def only_warning(outcome: Outcome) -> dict[str, str]:
    warnings = [d for d in outcome.diagnostics if d["message"].startswith("warning:")]
    assert len(warnings) == 1, outcome.stderr
    return warnings[0]


# ---------------------------------------------------------------- all at once


def test_all_errors_reported_at_once(check):
    """A file with five different errors gets five diagnostic lines, in file order."""
    out = check(
        """
        name: x
        descripton: typo at the top
        steps:
          - id: a
            kind: manual
            instruction: "{{ vars.nope }}"
          - id: a
            kind: manual
            instruction: hi
          - id: b
            kind: shell
            run: ls
          - id: c
            kind: manual
            instruction: hi
            needs: [zz]
        """
    )
    diags = out.diagnostics
    assert [(int(d["line"]), d["path"]) for d in diags] == [
        (2, "descripton"),
        (6, "steps[0].instruction"),
        (7, "steps[1].id"),
        (11, "steps[2].kind"),
        (16, "steps[3].needs[0]"),
    ], out.stderr
    assert len(out.stderr.strip().splitlines()) == 6
    assert out.stderr.rstrip().endswith("5 error(s)")


def test_errors_in_one_step_reported_together(check):
    """A bad common key does not hide errors in the same step's kind keys and checks."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: command
            run: ls
            irreversible: true
            retries: lots
            gates:
              - check: nope
        """
    )
    paths = [d["path"] for d in out.diagnostics]
    assert paths == ["steps[0].retries", "steps[0].gates[0].check"], out.stderr


def test_union_typed_key_reported_once_at_its_own_path(check):
    """A bad value for a key that accepts several types is one diagnostic at that key's path."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: command
            run: ls
            irreversible: true
            dry_run: unsafe
        """
    )
    diag = only(out)
    at(diag, 7, 5, "steps[0].dry_run")
    assert "'skip' or 'safe'" in diag["message"]


def test_unknown_key_in_var_suggests(check):
    """An unknown key in a var declaration suggests the right key like everywhere else."""
    out = check(
        """
        name: x
        vars:
          token: {default: abc, secrt: true}
        steps: []
        """
    )
    diag = only(out)
    at(diag, 3, 25, "vars.token.secrt")
    assert diag["message"] == "unknown key 'secrt'; did you mean 'secret'?"


# ---------------------------------------------------------------- hostile input


def _alias_bomb() -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "name: x\nsteps: []\nmetadata:\n  links: {}\nbomb:\n" + "\n".join("  " + line for line in lines) + "\n"


def test_alias_bomb_rejected(check):
    """A billion-laughs alias bomb is rejected at the alias limit, never expanded
    (bench/hostile_bench.py times the corpus's alias bombs)."""
    out = check(_alias_bomb())
    diag = only(out)
    assert "alias bomb" in diag["message"]
    assert int(diag["line"]) >= 6


def test_file_over_two_megabytes_rejected(check):
    """A file larger than 2 MB is refused before it is parsed."""
    text = "name: x\nsteps: []\n# " + "x" * (2 * 1024 * 1024) + "\n"
    diag = only(check(text))
    at(diag, 1, 1, "<root>")
    assert diag["message"].startswith("file is 2,097,1") and diag["message"].endswith("bytes; the limit is 2,097,152")


def test_nesting_deeper_than_64_rejected(check):
    """Nesting deeper than 64 levels is refused, located where the limit is crossed."""
    text = "name: x\nsteps: []\nmetadata:\n  links: " + "[" * 80 + "]" * 80 + "\n"
    diag = only(check(text))
    assert (int(diag["line"]), diag["message"]) == (4, "nesting is deeper than 64 levels")


def test_non_utf8_bytes_rejected(check):
    """A file that is not UTF-8 is refused with the line of the first bad byte."""
    diag = only(check("name: x\nsteps: []\ndescription: caf\u00e9\n".encode("latin-1")))
    at(diag, 3, 1, "<root>")
    assert diag["message"] == "file is not valid UTF-8 text; save it as UTF-8"


def test_python_tag_rejected_and_not_executed(cli_subprocess, write, tmp_path):
    """A ``!!python/object/apply:os.system`` tag is refused and its payload never runs."""
    marker = tmp_path / "PWNED"
    write(RB, f"name: x\nsteps: []\ndescription: !!python/object/apply:os.system ['touch {marker}']\n")
    for command in ("validate", "plan"):
        out = cli_subprocess(command, RB)
        out.assert_clean()
        assert out.exit_code == 2
        diag = only(out)
        at(diag, 3, 14, "description")
        assert diag["message"].startswith("tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed")
    assert not marker.exists()


def test_hostile_input_in_a_real_process(cli_subprocess, write):
    """Run as a real process, an alias bomb exits 2 with a diagnostic and no traceback."""
    write(RB, _alias_bomb())
    out = cli_subprocess("validate", RB)
    out.assert_clean()
    assert out.exit_code == 2
    assert "alias bomb" in only(out)["message"]


# ---------------------------------------------------------------- crashes and gaps found while writing these tests


@pytest.mark.parametrize(("key", "value"), [("rollback", "5"), ("success_criteria", "true"), ("rollback", "1.5")])
def test_scalar_where_a_list_belongs(check, key, value):
    """A scalar given for a top-level list key is a type error at that key, exit 2."""
    diag = only(check(f"name: x\nsteps: []\n{key}: {value}\n"))
    at(diag, 3, 1, key)
    assert diag["message"] == "Input should be a valid list"


def test_deeply_nested_template(check):
    """A template nested too deeply for the parser is a template error at its key, exit 2."""
    out = check(
        f"""
        name: x
        steps:
          - id: a
            kind: manual
            instruction: '{"{{" * 300}'
        """
    )
    at(only(out), 5, 5, "steps[0].instruction")


def test_definition_params_not_a_mapping(check, write):
    """A definition whose ``params`` is not a mapping is a diagnostic in that definition file."""
    write("steps/listy.yaml", "description: d\nparams: [target]\nstep:\n  kind: manual\n  instruction: hi\n")
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: listy
        """
    )
    diag = find(out, "params")
    assert diag["file"].endswith("steps/listy.yaml") and int(diag["line"]) == 2, diag


def test_failed_uses_reports_only_the_uses_problem(check, write):
    """A ``uses:`` that cannot be resolved is one diagnostic, not one plus 'kind is missing'."""
    write("steps/ok.yaml", BACKUP_DEFINITION)
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: ../x
        """
    )
    at(only(out), 4, 5, "steps[0].uses")


def test_unknown_template_filter(check):
    """A template using a filter Jinja does not have is reported by validate."""
    out = check(
        """
        name: x
        vars:
          v: 1
        steps:
          - id: a
            kind: manual
            instruction: "{{ vars.v | nofilter }}"
        """
    )
    diag = only(out)
    at(diag, 7, 5, "steps[0].instruction")
    assert "nofilter" in diag["message"]


def test_loop_variable_inside_for_is_valid(check):
    """``{{ loop.index }}`` inside a for loop is valid Jinja and validates."""
    check(
        """
        name: x
        vars:
          hosts: [a, b]
        steps:
          - id: a
            kind: manual
            instruction: "{% for h in vars.hosts %}{{ loop.index }}={{ h }} {% endfor %}"
        """,
        code=0,
    )


def test_error_inside_definition_located_in_definition(check, write):
    """An unknown kind inside a definition is located in the definition file."""
    write("steps/bad.yaml", "description: d\nstep:\n  kind: comand\n  run: ls\n")
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: bad
        """
    )
    diag = find(out, "unknown step kind 'comand'")
    assert diag["file"].endswith("steps/bad.yaml") and (int(diag["line"]), int(diag["col"])) == (3, 3), diag


# ---------------------------------------------------------------- neighbours of the fixes above


def test_union_typed_list_reports_the_bad_items(check):
    """A list given to a key that takes a string or a list is checked as a list, item by item."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: command
            run: ls
            irreversible: true
            rollback:
              kind: command
              run: [1, {a: 2}]
        """
    )
    assert [d["path"] for d in out.diagnostics] == ["steps[0].rollback.run[0]", "steps[0].rollback.run[1]"], out.stderr


def test_union_typed_key_of_no_accepted_type(check):
    """A value that none of a key's types accepts is one error naming them all."""
    diag = only(check("name: x\nsteps:\n  - id: a\n    kind: command\n    run: 5\n    irreversible: true\n"))
    at(diag, 5, 5, "steps[0].run")
    assert diag["message"] == "expected a string or a list (got 5)"


def test_union_typed_mapping_reports_inside_the_mapping(check):
    """A mapping for ``dry_run`` is a step body: its problems are reported, not "should be 'skip'"."""
    out = check(
        """
        name: x
        steps:
          - id: a
            kind: command
            run: ls
            irreversible: true
            dry_run:
              title: no kind
        """
    )
    diag = only(out)
    at(diag, 7, 5, "steps[0].dry_run.kind")
    assert diag["message"] == "required key is missing"


def test_retries_message_names_both_forms(check):
    """``retries`` of the wrong type says that a count or a mapping is expected."""
    diag = only(check("name: x\nsteps:\n  - id: a\n    kind: manual\n    instruction: hi\n    retries: lots\n"))
    at(diag, 6, 5, "steps[0].retries")
    assert diag["message"] == "expected a count or a mapping with count, delay, backoff, got 'lots'"


def test_template_in_a_common_key_is_an_error(check):
    """Common keys are never rendered: a template where a duration belongs is an error, not a lost step."""
    out = check(
        """
        name: x
        vars:
          t: 5m
        steps:
          - id: a
            kind: manual
            instruction: hi
            timeout: "{{ vars.t }}"
        """
    )
    at(only(out), 8, 5, "steps[0].timeout")


def test_unknown_key_in_environment_suggests(check):
    """An unknown key in an environment suggests the right key."""
    diag = only(check("name: x\nenvironments:\n  prod: {protectd: true}\nsteps: []\n"))
    at(diag, 3, 10, "environments.prod.protectd")
    assert diag["message"] == "unknown key 'protectd'; did you mean 'protected'?"


def test_names_jinja_binds_are_valid(check):
    """Names bound by set, macro and with, and Jinja's globals such as range, are not undefined."""
    check(
        """
        name: x
        steps:
          - id: a
            kind: manual
            instruction: >-
              {% set n = 2 %}{% macro twice(v) %}{{ v }}{{ v }}{% endmacro %}
              {% with w = n %}{{ twice(w) }}{% endwith %}{% for i in range(n) %}{{ loop.index }}{% endfor %}
        """,
        code=0,
    )


def test_unknown_template_test(check):
    """A Jinja test that does not exist is reported, with the closest one."""
    out = check(
        """
        name: x
        vars:
          v: 1
        steps:
          - id: a
            kind: manual
            instruction: "{% if vars.v is od %}odd{% endif %}"
        """
    )
    assert only(out)["message"] == "template uses unknown test 'od'; did you mean 'odd'?"


def test_expect_bare_value_is_equality(check):
    """A bare word in ``expect`` still means equality with it."""
    check(
        """
        name: x
        connections:
          db: sqlite://
        steps:
          - id: a
            kind: manual
            instruction: hi
            gates:
              - check: sql
                connection: db
                query: select status from t
                expect: ok
        """,
        code=0,
    )


def test_wrong_type_with_parameter_is_the_only_error(check, write):
    """A ``with`` value of the wrong type is reported once, without follow-on errors from the definition."""
    write("steps/backup.yaml", BACKUP_DEFINITION.replace("  irreversible: true", "  irreversible: true\n  timeout: '{{ params.keep }}'"))
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: backup
            with: {target: /b, keep: five}
        """
    )
    diag = only(out)
    at(diag, 5, 24, "steps[0].with.keep")
    assert diag["message"] == "expected integer, got str 'five'"


@pytest.mark.parametrize("uses", ["alpha", "evil", "nosuch"])
def test_unresolvable_uses_is_the_only_error(check, write, tmp_path, uses):
    """A cycle, a link out of steps/ or a missing definition is one diagnostic at ``uses``."""
    write("steps/alpha.yaml", "description: a\nstep:\n  uses: beta\n")
    write("steps/beta.yaml", "description: b\nstep:\n  uses: alpha\n")
    (tmp_path / "steps" / "evil.yaml").symlink_to(write("elsewhere/evil.yaml", "step:\n  kind: manual\n  instruction: x\n"))
    out = check(f"name: x\nsteps:\n  - id: a\n    uses: {uses}\n")
    at(only(out), 4, 5, "steps[0].uses")


def test_problem_in_a_definition_used_twice_is_reported_once(check, write):
    """Two steps using a broken definition get its problem once, in the definition's file."""
    write("steps/bad.yaml", "description: d\nstep:\n  kind: comand\n  run: ls\n")
    out = check("name: x\nsteps:\n  - id: a\n    uses: bad\n  - id: b\n    uses: bad\n")
    diag = only(out)
    assert diag["file"].endswith("steps/bad.yaml") and diag["path"] == "step.kind", diag


def test_definition_reading_an_undeclared_parameter(check, write):
    """A definition's template reading a parameter it does not declare is reported in the definition."""
    write("steps/typo.yaml", "params:\n  target: {}\nstep:\n  kind: manual\n  instruction: 'to {{ params.taget }}'\n")
    out = check("name: x\nsteps:\n  - id: a\n    uses: typo\n    with: {target: /b}\n")
    diag = only(out)
    assert diag["file"].endswith("steps/typo.yaml") and (int(diag["line"]), diag["path"]) == (5, "step.instruction"), diag
    assert diag["message"] == "template uses undeclared parameter 'taget'; did you mean 'target'?"


def test_keys_a_using_step_writes_itself_are_located_in_the_runbook(check, write):
    """A problem in a key the runbook step sets (beside ``uses``) is located in the runbook."""
    write("steps/backup.yaml", BACKUP_DEFINITION)
    out = check(
        """
        name: x
        steps:
          - id: a
            uses: backup
            with: {target: /b}
            needs: [nope]
        """
    )
    at(only(out), 6, 13, "steps[0].needs[0]")


def test_templated_expectation_validates(check):
    """An ``expect:`` holding a template is checked once rendered (``{{ 1 }}`` once crashed validate: a set of sets)."""
    outcome = check(
        """
        name: x
        connections: {app: "sqlite://"}
        steps:
          - id: a
            kind: manual
            instruction: x
            gates:
              - {check: row_count, connection: app, table: t, expect: "{{ 1 }}"}
        """,
        code=0,
    )
    outcome.assert_clean()
