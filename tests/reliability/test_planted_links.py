"""Planted symbolic links, at every level, for every file runbook writes (``runbook.safefile``).

Each writer (step log, notification file, ``report -o``, the backfill's CSV
report) is pointed at a path whose directory, sub-directory or file is a link
to somewhere outside the project. Each must refuse with a message naming the
link and saying to remove it, and leave the link's target exactly as it was.
The backfill's report used to follow the link and overwrite the target.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from runbook import commands
from runbook.errors import Refused
from runbook.safefile import AppendLog, append_text, open_for_writing, write_text
from tests.steps.test_backfill import RESOLVE, make_schema, run_backfill

LEVELS = ["directory", "subdirectory", "file"]


class Outside:
    """What lies outside the project: a directory holding a precious file, and a link planted to it."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "outside"
        self.dir.mkdir()
        (self.dir / "precious").write_text("precious\n")
        self.before = self._snapshot()

    def _snapshot(self) -> dict[str, tuple[bytes, int]]:
        return {str(p.relative_to(self.dir)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mode) for p in self.dir.rglob("*")}

    def plant(self, root: Path, relative: str, level: str) -> Path:
        """Link the ``level`` of ``root/relative`` (``dir/sub/name``) to the outside; returns the path to write."""
        path = root / relative
        first, second = path.parent.parent, path.parent
        if level == "directory":
            first.parent.mkdir(parents=True, exist_ok=True)
            first.symlink_to(self.dir, target_is_directory=True)
        elif level == "subdirectory":
            first.mkdir(parents=True, exist_ok=True)
            second.symlink_to(self.dir, target_is_directory=True)
        else:
            second.mkdir(parents=True, exist_ok=True)
            path.symlink_to(self.dir / "precious")
        return path

    def assert_untouched(self) -> None:
        assert self._snapshot() == self.before


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    return Outside(tmp_path)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("RUNBOOK_STATE_URL", raising=False)
    return root


def _refusal_says_remove_the_link(err: Refused, link_level: Path) -> None:
    text = str(err)
    assert f"through {link_level}: it is a symbolic link" in text, text
    assert "remove the link" in text


# ---------------------------------------------------------------- the walker itself


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("writer", ["append", "truncate", "log"])
def test_walker_refuses_a_link_at_each_level(level: str, writer: str, project: Path, outside: Outside) -> None:
    """append_text, write_text and AppendLog refuse a link at any level; nothing outside changes."""
    path = outside.plant(project, "out/sub/file.txt", level)
    write: dict[str, Callable[[], None]] = {
        "append": lambda: append_text(path, project, "x\n", what="the file"),
        "truncate": lambda: write_text(path, project, "x\n", what="the file"),
        "log": lambda: AppendLog(path, project, what="the file").write("x"),
    }
    with pytest.raises(Refused) as refused:
        write[writer]()
    link = {"directory": project / "out", "subdirectory": project / "out" / "sub", "file": path}[level]
    _refusal_says_remove_the_link(refused.value, link)
    outside.assert_untouched()


def test_walker_creates_private_directories_and_files_and_appends(project: Path) -> None:
    """Missing directories are created 0700, the file 0600; append keeps, truncate replaces."""
    path = project / "a" / "b" / "f.log"
    append_text(path, project, "one\n", what="the file")
    append_text(path, project, "two\n", what="the file")
    assert path.read_text() == "one\ntwo\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((project / "a").stat().st_mode) == stat.S_IMODE((project / "a" / "b").stat().st_mode) == 0o700
    write_text(path, project, "three\n", what="the file")
    assert path.read_text() == "three\n"


def test_walker_refuses_a_file_where_a_directory_should_be(project: Path) -> None:
    (project / "out").write_text("not a directory\n")
    with pytest.raises(Refused, match="through .*out: it is not a directory"):
        open_for_writing(project / "out" / "f", project, what="the file")
    assert (project / "out").read_text() == "not a directory\n"


# ---------------------------------------------------------------- each writer


FAILING_ONCE = """\
name: r
vars:
  code: {default: "1"}
notifications:
  channels: [{type: console}]
steps:
  - id: a
    kind: command
    run: "echo ran >> counter; exit {{ vars.code }}"
    irreversible: true
"""


@pytest.mark.parametrize("level", ["logs", "run", "file"])
def test_step_log_link_is_refused_before_the_command_runs(level: str, project: Path, outside: Outside) -> None:
    """A link at .runbook/logs, at the run's log directory or at the next attempt's log: exit 3, the step never runs."""
    (project / "r.yaml").write_text(FAILING_ONCE)
    assert commands.run("r.yaml", interactive=False, workdir=project, stream=io.StringIO()) == 1
    logs = project / ".runbook" / "logs"
    (run_dir,) = logs.iterdir()
    link = {"logs": logs, "run": run_dir, "file": run_dir / "a.2.log"}[level]
    if level == "file":
        link.symlink_to(outside.dir / "precious")
    else:
        os.rename(link, project / "moved-away")
        link.symlink_to(outside.dir, target_is_directory=True)
    out = io.StringIO()
    with pytest.raises(Refused) as refused:
        commands.run("r.yaml", var_items=["code=0"], resume=True, accept_changes=True, interactive=False, workdir=project, stream=out)
    _refusal_says_remove_the_link(refused.value, link)
    assert (project / "counter").read_text() == "ran\n", "the command ran although its log could not be opened"
    outside.assert_untouched()


NOTIFYING = """\
name: n
notifications:
  channels: [{type: file, path: notes/sub/messages.log}]
  messages:
    start: "starting {{ runbook.name }}"
    success: "done"
steps:
  - id: a
    kind: command
    run: [/bin/true]
    irreversible: true
"""


@pytest.mark.parametrize("level", LEVELS)
def test_notification_file_link_is_refused_and_the_run_goes_on(level: str, project: Path, outside: Outside) -> None:
    """A notification never stops a run: the refusal is a warning naming the link; the target is untouched."""
    outside.plant(project, "notes/sub/messages.log", level)
    (project / "n.yaml").write_text(NOTIFYING)
    out = io.StringIO()
    assert commands.run("n.yaml", interactive=False, workdir=project, stream=out) == 0
    assert "notification failed: refusing to write the notification file through" in out.getvalue(), out.getvalue()
    assert "it is a symbolic link" in out.getvalue()
    outside.assert_untouched()


@pytest.mark.parametrize("level", LEVELS)
def test_report_output_link_is_refused(level: str, project: Path, outside: Outside) -> None:
    """``runbook report RUN -o out/sub/report.md``: refused (exit 3), the target untouched."""
    (project / "n.yaml").write_text(NOTIFYING.replace("type: file, path: notes/sub/messages.log", "type: console"))
    assert commands.run("n.yaml", interactive=False, workdir=project, stream=io.StringIO()) == 0
    (run_dir,) = (project / ".runbook" / "logs").iterdir()
    path = outside.plant(project, "out/sub/report.md", level)
    with pytest.raises(Refused) as refused:
        commands.report(run_dir.name, output=Path("out/sub/report.md"), echo=lambda _: None)
    link = {"directory": project / "out", "subdirectory": project / "out" / "sub", "file": path}[level]
    _refusal_says_remove_the_link(refused.value, link)
    outside.assert_untouched()


@pytest.mark.parametrize("level", LEVELS)
def test_backfill_report_link_is_refused_and_no_row_is_written(level: str, tmp_path: Path, project: Path, outside: Outside) -> None:
    """The backfill's CSV report through a planted link (it used to overwrite the target): refused, table unchanged."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_schema(url, 30)
    outside.plant(project, "out/sub/cases.csv", level)
    with pytest.raises(Refused) as refused:
        run_backfill(url, project, resolve=RESOLVE, set_column="subscriber_id", ambiguous="skip", report="out/sub/cases.csv")
    assert "it is a symbolic link" in str(refused.value) and "the backfill report" in str(refused.value)
    outside.assert_untouched()
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM plan_subscriptions WHERE subscriber_id IS NOT NULL AND subscriber_id NOT LIKE 'preset-%'").scalar() == 0
    engine.dispose()
