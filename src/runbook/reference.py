"""Descriptions of the format's keys, for ``runbook schema``: the key tables of
docs/runbook-format.md (``reference_keys``, generated from them and checked
against them by tests/schema/test_reference.py, so the two cannot drift)."""

from __future__ import annotations

import re

from runbook.reference_keys import KEYS

# Keys the reference describes in prose, not in a key table.
_PROSE: dict[str, dict[str, str]] = {
    "Contact": {
        "role": "Who this is (required), e.g. `DBA Lead`.",
        "name": "The person's name.",
        "contact": "How to reach them.",
        "when": "When to escalate to them.",
    },
    "Estimate": {"low": "Lower bound, in seconds.", "high": "Upper bound, in seconds."},
    "Message": {"title": "The message's title line (template).", "body": "The message text (template)."},
    # The backfill's health checks (§12.5, "Health-aware throttling").
    "PauseCheck": {
        "replication_lag": "Pause while a replica replays more than this behind (a duration).",
        "transactions_older_than": "Pause while a transaction open longer than this holds a lock on the table (a duration).",
        "sql": "A query whose first value is compared with `is`.",
        "is": "Pause while the `sql` value satisfies this, e.g. `> 5`.",
        "name": "How the progress line names this condition.",
        "connection": "Where to evaluate it; the step's connection by default.",
    },
    "Every": {"seconds": "Evaluate the health checks every this many seconds.", "batches": "Evaluate them every this many batches."},
}
# A table whose last column says where a key is used rather than what it means.
_PREFIX = {"Metadata": "Used by: "}
# A step body (rollback, dry_run) has the step's keys of the same name.
_SAME_AS = {"StepBody": "Step"}


def describe(owner: str, key: str) -> str | None:
    """The reference's Markdown text for ``key`` of ``owner`` (a model name, ``step:KIND`` or
    ``check:KIND``); a check kind's keys share the kind's "passes when" line."""
    owner = _SAME_AS.get(owner, owner)
    text = KEYS.get(owner, {}).get(key) or _PROSE.get(owner, {}).get(key)
    if text is None and ":" in owner:
        # A common key, listed again beside a kind's keys.
        text = KEYS["Step" if owner.startswith("step:") else "Check"].get(key)
    if text is None and owner.startswith("check:") and owner in KEYS:
        return f"A key of the `{owner[6:]}` check, which passes when {KEYS[owner]['']}"
    return _PREFIX.get(owner, "") + text if text else None


_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def plain(markdown: str) -> str:
    """The text without Markdown markup (links, code spans, emphasis), for editors that show plain text."""
    return _LINK.sub(r"\1", markdown).replace("`", "").replace("**", "")
