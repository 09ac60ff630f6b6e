"""``check: file_exists`` and ``check: file_fresh`` - a path or glob, optionally recent."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from runbook.checks.base import CheckContext, CheckResult
from runbook.model import Duration, format_duration


class FileExistsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    min_size: int = 0


class FileFreshParams(FileExistsParams):
    max_age: Duration


def _matches(pattern: str, ctx: CheckContext, min_size: int) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else str(ctx.workdir / pattern)
    found = [Path(p) for p in glob.glob(full)] if glob.has_magic(full) else [Path(full)]
    return [p for p in found if p.is_file() and p.stat().st_size >= min_size]


def _nothing_matches(pattern: str, ctx: CheckContext) -> str:
    """Says what was looked for where: a relative path resolves against the project directory (engine/whereabouts.py)."""
    if os.path.isabs(pattern):
        return f"nothing matches {pattern}"
    return f"nothing matches {ctx.workdir / pattern} ({pattern} resolved against the project directory {ctx.workdir})"


def exists_verdict(params: FileExistsParams, found: list[tuple[str, float]], missing: str | None = None) -> CheckResult:
    """``found``: (path, mtime) of each file matching, big enough (here or on a host);
    ``missing`` says where it was looked for when nothing was found."""
    if not found:
        return CheckResult(False, "no file", f"a file matching {params.path}", missing)
    return CheckResult(True, max(found, key=lambda f: f[1])[0], "a file")


def fresh_verdict(params: FileFreshParams, found: list[tuple[str, float]], now: float, missing: str | None = None) -> CheckResult:
    expected = f"age <= {format_duration(params.max_age)}"
    if not found:
        return CheckResult(False, "no file", expected, missing or f"nothing matches {params.path}")
    newest, mtime = max(found, key=lambda f: f[1])
    age = max(0.0, now - mtime)
    return CheckResult(age <= params.max_age, f"age {format_duration(age)}", expected, newest)


class FileExistsCheck:
    name: ClassVar[str] = "file_exists"
    Params: ClassVar[type[BaseModel]] = FileExistsParams
    read_only: ClassVar[bool] = True

    def describe(self, params: FileExistsParams) -> str:
        return f"a file matches {params.path}"

    def evaluate(self, params: FileExistsParams, ctx: CheckContext) -> CheckResult:
        found = [(str(p), p.stat().st_mtime) for p in _matches(params.path, ctx, params.min_size)]
        return exists_verdict(params, found, _nothing_matches(params.path, ctx))


class FileFreshCheck:
    name: ClassVar[str] = "file_fresh"
    Params: ClassVar[type[BaseModel]] = FileFreshParams
    read_only: ClassVar[bool] = True

    def describe(self, params: FileFreshParams) -> str:
        return f"a file matching {params.path} is younger than {format_duration(params.max_age)}"

    def evaluate(self, params: FileFreshParams, ctx: CheckContext) -> CheckResult:
        found = [(str(p), p.stat().st_mtime) for p in _matches(params.path, ctx, params.min_size)]
        return fresh_verdict(params, found, time.time(), _nothing_matches(params.path, ctx))


FILE_EXISTS = FileExistsCheck()
FILE_FRESH = FileFreshCheck()
