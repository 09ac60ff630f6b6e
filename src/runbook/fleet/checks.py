"""Checks with ``on:``: the same verdict as here, from what each host reports over ssh.

A check on several hosts holds when it holds on every one; the first host where
it does not is the result (its name in the detail). ``file_exists`` and
``file_fresh`` list the matching files on the host (its clock for the age); a
relative path is relative to the login directory there. The check's templates
see ``host`` (name, address, vars): they are rendered again for each host.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runbook.checks.base import CheckContext, CheckResult
from runbook.checks.command import DEFAULT_TIMEOUT_S, CommandCheckParams, verdict
from runbook.checks.files import FileExistsParams, FileFreshParams, exists_verdict, fresh_verdict
from runbook.fleet.context import Fleet
from runbook.fleet.hostrun import HostResult, Messages, run_on_host
from runbook.fleet.inventory import Host
from runbook.planner import RenderedCheck, render_check
from runbook.templating import TemplateFailed

# Prints the host's clock, then "mtime<TAB>path" of each regular file the pattern matches
# with at least RB_MIN_SIZE bytes. The pattern expands as a glob only: IFS is empty and a
# parameter's value is never re-read as code.
_LIST_FILES = r"""date +%s
IFS=
for f in $RB_PATH; do
  [ -f "$f" ] && [ "$(wc -c <"$f")" -ge "$RB_MIN_SIZE" ] && printf '%s\t%s\n' "$(stat -c %Y -- "$f")" "$f"
done
exit 0
"""


def evaluate_on_hosts(check: RenderedCheck, ctx: CheckContext, fleet: Fleet) -> CheckResult:
    assert check.check.on is not None
    hosts = fleet.hosts(check.check.on, "on")
    messages: Messages = queue.Queue()  # check output is judged, not shown
    kind = check.check.check

    def one(host: Host) -> tuple[Host, tuple[HostResult, CheckResult]]:
        try:
            params = _params_for(check, host)
        except TemplateFailed as err:
            return host, (HostResult(host.name, "failed", error=err.message), CheckResult(False, "a template error", "a rendered check", err.message))
        return host, _run(kind, params, host, ctx, fleet, messages)

    with ThreadPoolExecutor(max_workers=max(1, min(len(hosts), 32)), thread_name_prefix="fleet-check") as pool:
        results = list(pool.map(one, hosts))
    for host, (result, verdict_) in results:
        if not verdict_.ok:
            detail = f"on {host.name}" + (f": {verdict_.detail}" if verdict_.detail else "") + (f": {result.error}" if result.status == "unreachable" else "")
            return CheckResult(False, verdict_.observed, verdict_.expected, detail, interrupted=verdict_.interrupted)
    last = results[-1][1][1] if results else CheckResult(False, "no host", "a host")
    return CheckResult(last.ok, last.observed, last.expected, f"on {len(results)} host(s)")


def _params_for(check: RenderedCheck, host: Host) -> Any:
    """The check's parameters rendered with ``host``: once per host, as a step's command is."""
    again = check.__dict__.get("_render_again")
    if again is None:
        return check.params
    context, where = again
    return render_check(check.check, {**context, "host": host.template_value()}, f"{where} on {host.name}").params


def _run(kind: str, params: Any, host: Host, ctx: CheckContext, fleet: Fleet, messages: Messages) -> tuple[HostResult, CheckResult]:
    timeout = ctx.timeout or DEFAULT_TIMEOUT_S
    if kind == "command":
        assert isinstance(params, CommandCheckParams)
        result = _on_host(fleet, host, params.run, params.cwd, params.env, timeout, ctx, messages)
        code = None if result.status in ("unreachable", "interrupted", "timed_out") else result.exit_code
        judged = verdict(params, result.lines, code, timed_out=result.status == "timed_out", interrupted=result.status == "interrupted")
        if result.status == "unreachable":
            judged = CheckResult(False, "unreachable", "exit 0", result.error)
        return result, judged
    assert isinstance(params, FileExistsParams)
    env = {"RB_PATH": params.path, "RB_MIN_SIZE": str(params.min_size)}
    result = _on_host(fleet, host, _LIST_FILES, None, env, timeout, ctx, messages)
    if not result.ok or not result.lines:
        return result, CheckResult(False, result.status, "a listing of the host's files", result.error, interrupted=result.status == "interrupted")
    now = float(result.lines[0])
    found = [(path, float(mtime)) for mtime, _, path in (line.partition("\t") for line in result.lines[1:] if "\t" in line)]
    if isinstance(params, FileFreshParams):
        return result, fresh_verdict(params, found, now)
    return result, exists_verdict(params, found)


def _on_host(fleet: Fleet, host: Host, run: str | list[str], cwd: str | None, env: dict[str, str], timeout: float, ctx: CheckContext, messages: Messages) -> HostResult:
    return run_on_host(fleet.transport, host, run, cwd=cwd, env=env, timeout=timeout, supervisor=ctx.supervisor, mask=ctx.masker.mask, messages=messages)
