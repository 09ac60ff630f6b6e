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


class FileExistsCheck:
    name: ClassVar[str] = "file_exists"
    Params: ClassVar[type[BaseModel]] = FileExistsParams
    read_only: ClassVar[bool] = True

    def describe(self, params: FileExistsParams) -> str:
        return f"a file matches {params.path}"

    def evaluate(self, params: FileExistsParams, ctx: CheckContext) -> CheckResult:
        files = _matches(params.path, ctx, params.min_size)
        if not files:
            return CheckResult(False, "no file", f"a file matching {params.path}", _nothing_matches(params.path, ctx))
        return CheckResult(True, str(max(files, key=lambda p: p.stat().st_mtime)), "a file")


class FileFreshCheck:
    name: ClassVar[str] = "file_fresh"
    Params: ClassVar[type[BaseModel]] = FileFreshParams
    read_only: ClassVar[bool] = True

    def describe(self, params: FileFreshParams) -> str:
        return f"a file matching {params.path} is younger than {format_duration(params.max_age)}"

    def evaluate(self, params: FileFreshParams, ctx: CheckContext) -> CheckResult:
        expected = f"age <= {format_duration(params.max_age)}"
        files = _matches(params.path, ctx, params.min_size)
        if not files:
            return CheckResult(False, "no file", expected, _nothing_matches(params.path, ctx))
        newest = max(files, key=lambda p: p.stat().st_mtime)
        age = max(0.0, time.time() - newest.stat().st_mtime)
        return CheckResult(age <= params.max_age, f"age {format_duration(age)}", expected, str(newest))


FILE_EXISTS = FileExistsCheck()
FILE_FRESH = FileFreshCheck()
