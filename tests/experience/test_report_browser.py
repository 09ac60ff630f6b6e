"""``runbook report --format html`` opened in a real headless browser (Debian's chromium):
a passed, a failed and a paused run, read back from the DOM chromium built, drawn
to a screenshot, and fed hostile text that must stay text."""

from __future__ import annotations

import json
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.experience.conftest import Scratch

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
)

PASSED = """\
name: reported
steps:
  - id: prepare
    title: Prepare <the> ground & more
    kind: command
    run: echo ready
    estimate: 5s
  - id: check
    title: Check it holds
    kind: command
    run: "sleep 0.3"
    estimate: 10m
    gates:
      - check: command
        name: the service answers
        run: "true"
  - id: optional
    kind: command
    run: echo never
    when: "environment == 'production'"
success_criteria:
  - A person looked at the dashboard
"""

FAILED = """\
name: broken
steps:
  - id: prepare
    kind: command
    run: echo ready
    irreversible: true
  - id: migrate
    title: Run the migration
    kind: command
    run: "echo 'applying 0042'; echo 'could not connect: connection refused' >&2; exit 3"
    irreversible: true
    retries: 1
    hints:
      "connection refused": Is the database up? Check the VPN.
  - id: deploy
    title: Deploy v2
    kind: command
    run: echo deployed
    irreversible: true
"""

PAUSED = """\
name: gated
steps:
  - id: prepare
    kind: command
    run: echo ready
    irreversible: true
  - id: deploy
    title: Deploy v2
    kind: command
    run: echo deployed
    confirm: Deploy v2 to everyone?
    irreversible: true
"""

# Hostile text in every place a run's record quotes the runbook, a var or a step's output.
HOSTILE = """\
name: hostile
vars:
  payload:
    default: "<script>document.title='pwned-var'</script>"
steps:
  - id: inject
    title: "<script>document.title='pwned-title'</script>"
    kind: command
    run: >-
      echo '"><img src=x onerror="document.title=`pwned-img`">';
      echo '{{ vars.payload }}' >&2; exit 1
    irreversible: true
    hints:
      "pwned": "<script>document.title='pwned-hint'</script>"
success_criteria:
  - "<img src=x onerror=\\"document.title='pwned-criterion'\\">"
"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",  # tests run as root in CI containers, where the sandbox cannot start
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _console_messages(stderr: str) -> list[str]:
    # Chromium logs every page console message (errors, uncaught exceptions,
    # failed loads, a blocked script) as a ":CONSOLE" line at --v=0.
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _dom(page: Path, tmp_path: Path) -> str:
    result = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert not _console_messages(result.stderr)
    return result.stdout


def _report(scratch: Scratch, name: str, *, code: int) -> tuple[Path, str]:
    result = scratch.runbook("run", name)
    assert result.returncode == code, result.stdout + result.stderr
    run_id = scratch.latest_run_id()
    out = scratch.root / f"{Path(name).stem}.html"
    made = scratch.runbook("report", run_id, "--format", "html", "-o", out.name)
    assert made.returncode == 0, made.stderr
    return out, run_id


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """A passed, a failed and a paused run's reports (and their run ids), one project each."""
    made = {}
    for name, text, code in (("passed", PASSED, 0), ("failed", FAILED, 1), ("paused", PAUSED, 4)):
        scratch = Scratch(tmp_path_factory.mktemp(name))
        scratch.write(f"{name}.yaml", text)
        made[name] = _report(scratch, f"{name}.yaml", code=code)
    return made


def _section(dom: str, element_id: str) -> str:
    start = dom.index(f'id="{element_id}"')
    return dom[start:dom.index("</section>", start)]


def test_passed_run_report(reports: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    """A passed run: a green banner, every step's row, the timeline, no failure or pause sections."""
    page, run_id = reports["passed"]
    dom = _dom(page, tmp_path)
    assert '<header class="banner tone-ok" id="banner" data-status="passed">' in dom
    assert '<p class="headline">Passed</p>' in dom
    assert "<h1>Change report: passed (default)</h1>" not in dom  # the runbook's own name, not the file's
    assert "<h1>Change report: reported (default)</h1>" in dom
    assert f"<title>reported {run_id}: passed</title>" in dom
    assert "finished -" not in dom and "took -" not in dom
    assert 'id="failure"' not in dom and 'id="pause"' not in dom and 'id="next"' not in dom
    # The steps table, as the browser parsed it (it adds <tbody>), titles escaped.
    assert "<th>step</th><th>status</th>" in dom
    assert "<code>prepare</code> Prepare &lt;the&gt; ground &amp; more" in dom
    assert '<td class="s-passed">passed</td>' in dom and '<td class="s-skipped">skipped</td>' in dom
    # The timeline is a real SVG with a bar for each step that ran; the 10-minute estimate of a
    # 0.3 s step is cut at the end of the scale (the scale is what happened), not the other way round.
    svg = dom[dom.index("<svg"):dom.index("</svg>")]
    assert 'aria-label="timeline"' in svg
    assert svg.count('class="took bar-passed"') == 2
    assert '<g class="row" data-step="optional" data-status="skipped"><title>optional: skipped</title>' in svg
    check_row = svg[svg.index('data-step="check"'):]
    check_row = check_row[:check_row.index("</g>")]
    assert "›</text>" in check_row, "an estimate past the scale is marked cut"
    assert "☐ (manual) A person looked at the dashboard" in dom


def test_failed_run_report(reports: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    """A failed run is obvious: red banner naming the step, its output tail and hint, attempts,
    the log path, the steps that never ran, and the resume and rollback commands."""
    page, run_id = reports["failed"]
    dom = _dom(page, tmp_path)
    assert '<header class="banner tone-bad" id="banner" data-status="failed">' in dom
    assert '<p class="headline">Failed at step migrate</p>' in dom
    assert "finished -" not in dom and "took -" not in dom and "(not finished)" in dom
    failure = _section(dom, "failure")
    assert "<h2>What failed: <code>migrate</code></h2>" in failure
    assert '<p class="err">exited with status 3</p>' in failure
    assert "2 attempts" in failure  # retries: 1
    assert f".runbook/logs/{run_id}/migrate.2.log</code>" in failure
    assert "could not connect: connection refused" in _section(dom, "failure")[failure.index('id="tail"'):]
    assert "<li><code>connection refused</code>: Is the database up? Check the VPN.</li>" in failure
    never = _section(dom, "not-run")
    assert "<code>deploy</code> Deploy v2" in never and "prepare" not in never
    nxt = _section(dom, "next")
    assert '<code class="cmd">runbook run failed.yaml --resume</code>' in nxt
    assert f'<code class="cmd">runbook rollback {run_id}</code>' in nxt
    assert '<td class="s-not-run">not run</td>' in dom


def test_paused_run_report(reports: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    """A run paused for approval: amber banner naming the step, the question, and the approve
    and resume commands to go on."""
    page, run_id = reports["paused"]
    dom = _dom(page, tmp_path)
    assert '<header class="banner tone-wait" id="banner" data-status="awaiting_approval">' in dom
    assert '<p class="headline">Paused: awaiting approval of step deploy</p>' in dom
    pause = _section(dom, "pause")
    assert "Deploy v2 to everyone?" in pause
    assert f'<code class="cmd">runbook approve {run_id} deploy</code>' in pause
    assert '<code class="cmd">runbook run paused.yaml --resume</code>' in pause
    assert 'id="failure"' not in dom


@pytest.mark.slow
def test_resumed_run_does_not_count_the_pause(tmp_path: Path) -> None:
    """After approve and --resume, the run's and the step's time leave out the pause, and the
    step counts one attempt: the paused record is not a try."""
    scratch = Scratch(tmp_path)
    scratch.write("gated.yaml", PAUSED)
    assert scratch.runbook("run", "gated.yaml").returncode == 4
    run_id = scratch.latest_run_id()
    assert scratch.runbook("approve", run_id, "deploy").returncode == 0
    assert scratch.runbook("run", "gated.yaml", "--resume").returncode == 0
    report = json.loads(scratch.runbook("report", run_id, "--format", "json").stdout)
    run = report["run"]
    assert run["status"] == "passed" and run["paused_s"] > 0
    assert run["duration_s"] + run["paused_s"] == pytest.approx(_wall(run), abs=0.01)
    deploy = next(s for s in report["steps"] if s["id"] == "deploy")
    assert deploy["attempts"] == 1 and deploy["status"] == "passed"


def _wall(run: dict[str, object]) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(str(run["last_activity_at"])) - datetime.fromisoformat(str(run["started_at"]))).total_seconds()


@pytest.mark.parametrize("which", ["passed", "failed", "paused"])
def test_report_screenshot_is_a_drawn_page(reports: dict[str, tuple[Path, str]], which: str, tmp_path: Path) -> None:
    """Each report draws: a PNG of the window's size with hundreds of distinct rows, not a blank page."""
    shot = tmp_path / f"{which}.png"
    result = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1100,900", f"--screenshot={shot}", reports[which][0].as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert not _console_messages(result.stderr)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1100, 900)
    assert _distinct_rows(png) > 50, "a blank page would have a handful of distinct rows"


def test_hostile_text_stays_text(tmp_path: Path) -> None:
    """<script> and "><img onerror> in a step title, a var, a step's output, a hint and a
    criterion reach the page as text: no element made of them, no script run."""
    scratch = Scratch(tmp_path / "project")
    scratch.write("hostile.yaml", HOSTILE)
    page, run_id = _report(scratch, "hostile.yaml", code=1)
    dom = _dom(page, tmp_path)
    assert f"<title>hostile {run_id}: failed</title>" in dom, "a script changed the title"
    assert "pwned" in dom  # the text is there...
    assert "<script" not in dom and "<img" not in dom  # ...as text, not as elements
    assert "&lt;script&gt;document.title='pwned-title'&lt;/script&gt;" in dom
    assert "\"&gt;&lt;img src=x onerror=\"document.title=`pwned-img`\"&gt;" in dom


def test_the_title_oracle_sees_a_script_run(tmp_path: Path) -> None:
    """The check above would catch an injection: an unescaped one changes the title in this chromium."""
    page = tmp_path / "injected.html"
    page.write_text("<!doctype html><html><head><title>report</title></head><body>\"><img src=x onerror=\"document.title='pwned'\"></body></html>")
    result = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert "<title>pwned</title>" in result.stdout


def test_console_error_detection_works(tmp_path: Path) -> None:
    """The console check would catch a broken page: a script error shows up in the log."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><body><script>notDefined();</script></body></html>")
    result = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert any("Uncaught ReferenceError" in line for line in _console_messages(result.stderr))


def _distinct_rows(png: bytes) -> int:
    """Distinct (filtered) scanlines of an 8-bit RGB/RGBA PNG: a blank page has a
    handful, a page of text, tables and bars has hundreds."""
    pos, data = 8, b""
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        kind = png[pos + 4:pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(data)
    width, colour = int.from_bytes(png[16:20], "big"), png[25]
    stride = 1 + width * {2: 3, 6: 4}[colour]
    return len({raw[i + 1:i + stride] for i in range(0, len(raw), stride)})
