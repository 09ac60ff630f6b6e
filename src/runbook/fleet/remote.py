"""What reaches a remote host: a constant wrapper on the command line, the script on stdin.

The remote command line is the same for every step (``WRAPPER_COMMAND``): no
value of the runbook ever appears on it, so nothing needs quoting a second time
for the remote login shell, and no secret is visible in the remote ``ps``.
The step's script (its ``cd``, its ``env:`` exports and its ``run:`` text,
already quoted for ``sh`` like a local command line) travels base64-encoded as
the first line of the session's stdin; the wrapper writes it to a private file
(mode 0600 in a 0700 directory) and runs it with ``sh``, so it is read by the
same shell, with the same quoting, as a local command.

The script runs in a session of its own (``setsid``) with stdin at /dev/null.
The wrapper keeps reading the rest of the session's stdin, which runbook holds
open for as long as the command runs: when it ends (runbook stopped the ssh
client on Ctrl-C or a timeout, runbook was killed, the connection dropped), the
wrapper sends SIGTERM to the script's whole process group, SIGKILL 5 s later.
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Mapping

from runbook.errors import RunbookError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# One line: a csh-family login shell cannot read a newline inside quotes. (Only POSIX
# login shells are tested: bash and dash.)
_WRAPPER = " ".join(
    [
        "umask 077;",
        'd=$(mktemp -d "${TMPDIR:-/tmp}/runbook.XXXXXX") || exit 125;',
        'head -n 1 | base64 -d >"$d/s" || { rm -rf "$d"; exit 125; };',
        "exec 3<&0;",
        'setsid sh "$d/s" </dev/null & p=$!;',
        '( while read -r _ <&3; do :; done; kill -TERM "-$p"; sleep 5; kill -KILL "-$p" ) >/dev/null 2>&1 & w=$!;',
        'wait "$p"; r=$?;',
        'kill "$w" 2>/dev/null;',
        'rm -rf "$d";',
        'exit "$r"',
    ]
)

WRAPPER_COMMAND = "sh -c " + shlex.quote(_WRAPPER)
"""The one argument given to ``ssh`` as the remote command (read by the login shell)."""


def script(run: str | list[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The script a remote host runs: ``cd``, ``export``s, then the command.

    An argv list becomes one shell command line quoting every word, so it runs with
    no word interpreted, as it would locally without a shell."""
    lines = []
    if cwd:
        lines.append(f"cd -- {shlex.quote(cwd)} || exit 1")
    for name, value in (env or {}).items():
        if not _ENV_NAME.fullmatch(name):
            raise RunbookError(f"env: {name!r} is not a variable name a remote shell can export")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines.append(run if isinstance(run, str) else "exec " + shlex.join(str(word) for word in run))
    return "\n".join(lines) + "\n"


def stdin_payload(text: str) -> bytes:
    """The first line of the session's stdin: the script, base64 (one line, any bytes in it)."""
    return base64.b64encode(text.encode()) + b"\n"
