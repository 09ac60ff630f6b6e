"""Asking the operator a yes/no question at the terminal."""

from __future__ import annotations

import sys


def stdin_prompt(question: str) -> bool:
    """Ask on the terminal; anything but y/yes is a no."""
    sys.stdout.write(question + "\nProceed? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")
