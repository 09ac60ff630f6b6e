"""The HTML change report: a Jinja2 template (autoescaped) over a ``Report``.

Everything a run recorded may hold text from the runbook, a step's output or a
var, so nothing reaches the page unescaped: the template is rendered with
``autoescape=True`` and this module hands it plain values, never markup.

The timeline is scaled to what happened: the axis spans the run's active time
(pauses for approval left out), so a run of seconds fills the width. Estimates
are drawn behind as a faint reference, cut at the axis end when they reach
past it (a 10-minute estimate next to a 2-second step).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from runbook.checks.base import result_text
from runbook.render.report import NOT_RUN, Report, decision, given, headline, secs, tick, timing, when

_TONES = {
    "passed": "ok",
    "failed": "bad",
    "rollback_failed": "bad",
    "awaiting_approval": "wait",
    "running": "wait",
    "interrupted": "wait",
    "refused": "wait",
}

# Geometry of the timeline, in SVG user units (the page's CSS pixels).
WIDTH, LABEL_W, TIMES_W, ROW_H, AXIS_H = 900, 170, 150, 22, 26
_NICE_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


@dataclass
class Bar:
    step_id: str
    status: str
    y: int
    x: float | None  # None: nothing ran (not run, skipped, paused before it ran)
    width: float
    estimate_width: float
    estimate_cut: bool  # the estimate reaches past the axis end
    times: str
    tooltip: str


@dataclass
class Timeline:
    bars: list[Bar]
    ticks: list[tuple[float, str]]
    height: int
    span: float


def timeline(report: Report) -> Timeline:
    rows = report.steps
    ends = [(r.offset or 0.0) + (r.seconds or 0.0) for r in rows if r.offset is not None]
    span = max([report.duration or 0.0, *ends, 0.001])
    plot = WIDTH - LABEL_W - TIMES_W
    scale = plot / span
    bars = []
    for i, row in enumerate(rows):
        y = AXIS_H + i * ROW_H
        ran = row.offset is not None
        x = LABEL_W + (row.offset or 0.0) * scale if ran else None
        took = secs(row.seconds) if ran else row.status
        # An estimate is a reference for a bar: a step that never ran has none to compare.
        estimate = (row.estimate_high or 0.0) * scale if ran else 0.0
        room = WIDTH - TIMES_W - (x if x is not None else LABEL_W)
        times = took + (f" / est. {secs(row.estimate_high)}" if row.estimate_high else "")
        tooltip = f"{row.step_id}: {row.status}" + (f", took {secs(row.seconds)}" if ran else "") + (f", estimate {secs(row.estimate_high)}" if row.estimate_high else "")
        # At least 2 units: a step of milliseconds in a run of minutes must still show.
        bars.append(Bar(row.step_id, row.status, y, x, max((row.seconds or 0.0) * scale, 2.0), min(estimate, room), estimate > room, times, tooltip))
    step = next((s for s in _NICE_STEPS if span / s <= 6), _NICE_STEPS[-1])
    ticks = [(LABEL_W + k * step * scale, secs(k * step) if k else "0") for k in range(int(span / step) + 1)]
    return Timeline(bars, ticks, AXIS_H + ROW_H * len(rows) + 8, span)


def gates(row: Any) -> list[dict[str, Any]]:
    return [{"ok": bool(c.get("ok")), "name": str(c.get("name")), "text": result_text(c)} for c in row.checks]


@functools.cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("runbook.render", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(secs=secs, when=when, tick=tick, decision=decision, given=given, gates=gates, NOT_RUN=NOT_RUN)
    return env


def render(report: Report) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        run=report.run,
        tone=_TONES.get(report.status, "neutral"),
        headline=headline(report),
        timing=timing(report),
        timeline=timeline(report),
        width=WIDTH,
        label_w=LABEL_W,
        times_w=TIMES_W,
        row_h=ROW_H,
        axis_h=AXIS_H,
    )
