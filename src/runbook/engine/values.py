"""The values a run was started with, and a resume that must use exactly those.

A run records, for each var, either its value (when nothing secret is in it)
or a salted scrypt hash of it (secret vars, values with a URL password). A
resume replays the recorded values, asks for every secret that was given on
the command line (it is not stored), and refuses a value that differs from
the original unless ``--accept-changes``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from runbook.errors import Refused, UsageError
from runbook.masking import Masker
from runbook.planner import Resolved

# A few milliseconds per secret on a laptop; a brute force over guesses pays the same per guess.
_SCRYPT = {"n": 2**12, "r": 8, "p": 1, "dklen": 16}


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _hash(salt: str, value: Any) -> str:
    return hashlib.scrypt(_text(value).encode(), salt=bytes.fromhex(salt), maxmem=64 * 2**20, **_SCRYPT).hex()


def record(resolved: Resolved, given: Mapping[str, str]) -> dict[str, Any]:
    """What the run record keeps of its vars (see the module docstring)."""
    salt = secrets.token_hex(16)
    entries: dict[str, dict[str, Any]] = {}
    for name, value in resolved.vars.items():
        entry: dict[str, Any] = {"given": name in given}
        if _storable(name, value, resolved):
            entry["value"] = value
        else:
            entry["hash"] = _hash(salt, value)
        entries[name] = entry
    return {"salt": salt, "vars": entries}


def _storable(name: str, value: Any, resolved: Resolved) -> bool:
    text = _text(value)
    return name not in resolved.secret_vars and resolved.masker.mask(text) == text


def replay(recorded: Mapping[str, Any] | None, given: Mapping[str, str]) -> dict[str, str]:
    """The --var values a resume runs with: the run's own, then the ones given now."""
    replayed: dict[str, str] = {}
    for name, entry in _entries(recorded).items():
        if entry.get("given") and "value" in entry and name not in given:
            value = entry["value"]
            replayed[name] = value if isinstance(value, str) else _text(value)
    return {**replayed, **given}


def recorded_text(recorded: Mapping[str, Any] | None, stand_in: Mapping[str, str]) -> dict[str, str]:
    """The text values the run recorded for its vars, as --var values (also those it read
    from its OS environment), and ``stand_in[name]`` for each var in ``stand_in`` that was
    recorded only as a hash (a secret, never stored)."""
    values: dict[str, str] = {}
    for name, entry in _entries(recorded).items():
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("value"), str):
            values[name] = entry["value"]
        elif "hash" in entry and name in stand_in:
            values[name] = stand_in[name]
    return values


def _entries(recorded: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    entries = (recorded or {}).get("vars") if isinstance(recorded, Mapping) else None
    return entries if isinstance(entries, dict) else {}


def changes(recorded: Mapping[str, Any] | None, resolved: Resolved, given: Mapping[str, str], run_id: str) -> list[str]:
    """What differs between the recorded values and the ones this resume would use.

    Raises UsageError for a secret that was given on the command line and is not
    given again: it cannot be recovered, only asked for."""
    entries = _entries(recorded)
    salt = (recorded or {}).get("salt", "")
    missing = [n for n, e in entries.items() if e.get("given") and "value" not in e and n not in given]
    if missing:
        flags = " ".join(f"--var {n}=..." for n in missing)
        raise UsageError(
            f"run {run_id} was started with {', '.join(missing)} given on the command line; "
            "secret values are never stored, so give them again to resume",
            hint=f"add {flags} (the same values; a different value is refused unless --accept-changes)",
        )
    differs = []
    for name, entry in entries.items():
        if name not in resolved.vars:
            differs.append(f"{name} (no longer declared)")
            continue
        value = resolved.vars[name]
        same = entry["value"] == value if "value" in entry else bool(salt) and entry.get("hash") == _hash(salt, value)
        if not same:
            differs.append(name)
    differs += [f"{n} (new)" for n in resolved.vars if n not in entries]
    return differs


def refuse_changes(differs: list[str], run_id: str, masker: Masker) -> Refused:
    return Refused(
        masker.mask(f"var(s) {', '.join(differs)} differ from the values run {run_id} started with"),
        hint="resume with the same values (from the same environment and --var), or pass --accept-changes to go on with the new ones",
    )
