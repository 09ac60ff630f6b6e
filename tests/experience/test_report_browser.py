"""``runbook report --format html`` opened in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

import pytest

from tests.experience.conftest import Scratch

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
)

REPORTED = """\
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
    estimate: 1s
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
    # failed loads) as a ":CONSOLE" line at --v=0.
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = Scratch(tmp_path_factory.mktemp("reported"))
    scratch.write("reported.yaml", REPORTED)
    assert scratch.runbook("run", "reported.yaml").returncode == 0
    out = scratch.root / "report.html"
    result = scratch.runbook("report", scratch.latest_run_id(), "--format", "html", "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_html_report_renders_with_steps_table_and_svg_timeline(report_html: Path, tmp_path: Path) -> None:
    result = _chromium(tmp_path, "--dump-dom", report_html.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert not _console_messages(result.stderr)
    assert "<h1>Change report: reported (default)</h1>" in dom
    # The steps table, as the browser parsed it (it adds <tbody>), titles escaped.
    assert "<th>step</th><th>status</th>" in dom
    assert "<code>prepare</code> Prepare &lt;the&gt; ground &amp; more" in dom
    assert "<td class=\"s-passed\">passed</td>" in dom and "<td class=\"s-skipped\">skipped</td>" in dom
    # The timeline is a real SVG element in the DOM with one bar per step.
    svg = dom[dom.index("<svg"):dom.index("</svg>")]
    assert 'aria-label="timeline"' in svg
    for step in ("prepare", "check", "optional"):
        assert f"<title>{step}: " in svg
    assert "☐ (manual) A person looked at the dashboard" in dom


def test_html_report_screenshot_is_a_drawn_page(report_html: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1100,900", f"--screenshot={shot}", report_html.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert not _console_messages(result.stderr)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1100, 900)
    assert _distinct_rows(png) > 50, "a blank page would have a handful of distinct rows"


def test_console_error_detection_works(tmp_path: Path) -> None:
    """The check above would catch a broken page: a script error shows up in the log."""
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
