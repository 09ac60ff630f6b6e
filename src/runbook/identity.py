"""Who is running this process: the operating system's answer, never the environment's.

Approvals, rejections and control requests record the OS user and host of
whoever runs the command. The user comes from the password database entry of
the process's real uid, not from ``$USER``/``$LOGNAME``, which anyone can set:
an approval must not be given in someone else's name by exporting a variable.
There is deliberately no override for tests; they run the command as another
real OS user (``runuser -u alice -- runbook approve ...``).
"""

from __future__ import annotations

import os
import pwd
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    host: str

    def __str__(self) -> str:
        return f"{self.user}@{self.host}"


def current() -> Identity:
    """The OS user (by real uid) and host name of this process."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry, e.g. an arbitrary uid in a container
        user = f"uid{uid}"
    return Identity(user, socket.gethostname())
