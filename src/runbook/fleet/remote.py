"""What reaches a remote host: a constant wrapper on the command line, the script on stdin.

The remote command line is the same for every step (``WRAPPER_COMMAND``): no
value of the runbook ever appears on it, so nothing needs quoting a second time
for the remote login shell, and no secret is visible in the remote ``ps``.
The step's script (its ``cd``, its ``env:`` exports and its ``run:`` text,
already quoted for ``sh`` like a local command line) travels as the first line
of the session's stdin, its backslashes doubled and its newlines written ``\n``
(``stdin_payload``). The wrapper reads that line with the shell's own ``read``
and hands it, decoded by ``printf %b``, to ``sh`` through a pipe
(``sh /dev/fd/4``): read by the same shell, with the same quoting, as a local
command, and never written to a file. Only shell builtins do that work: a
session costs the login shell, ``setsid`` and ``sh``, which matters when a step
starts on many hosts at once (the wrapper used to write the script to a file
with ``mktemp``, ``head`` and ``base64`` and remove it with ``rm``: four more
processes per host, ~2.5 ms each on the bench's loaded cores).

The script runs in a session of its own (``setsid``) with stdin at /dev/null.
The wrapper keeps reading the rest of the session's stdin, which runbook holds
open for as long as the command runs: when it ends (runbook stopped the ssh
client on Ctrl-C or a timeout, runbook was killed, the connection dropped), the
wrapper sends SIGTERM to the script's whole process group, SIGKILL 5 s later.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from runbook.errors import RunbookError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# One line: a csh-family login shell cannot read a newline inside quotes. (Only POSIX
# login shells are tested: bash and dash.) The script's own first line closes the pipe's
# descriptor, so its commands do not inherit it; fd 3 (the session's stdin, watched) is
# not theirs either.
_WRAPPER = " ".join(
    [
        "IFS= read -r s || exit 125;",
        "exec 3<&0;",
        """printf 'exec 4<&-\\n%b' "$s" | setsid sh /dev/fd/4 4<&0 </dev/null 3<&- & p=$!;""",
        '( while read -r _ <&3; do :; done; kill -TERM "-$p"; sleep 5; kill -KILL "-$p" ) >/dev/null 2>&1 & w=$!;',
        'wait "$p"; r=$?;',
        'kill "$w" 2>/dev/null;',
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
    """The first line of the session's stdin: the script, one line that ``printf %b`` turns back
    into it (every backslash doubled first, so ``\\n`` is the only other escape in it)."""
    if "\0" in text:
        raise RunbookError("a NUL character cannot reach a remote shell (nor a local one)")
    return text.replace("\\", "\\\\").replace("\n", "\\n").encode() + b"\n"
