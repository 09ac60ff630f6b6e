"""What makes a step the same step: its fingerprint.

A passed step counts for a resume, ``--only`` or ``--from`` only while its
fingerprint is unchanged, and an approval holds only for the fingerprint it
was given to. The fingerprint hashes

- the step's definition as written (templates unrendered; ``estimate``,
  ``hints`` and ``description`` left out: they change nothing it does),
- the value of every name its templates read (``vars.db_host``, ``env.HOME``,
  ``environment``), masked, so rotating a secret is not a change,
- the identity of every database connection it or its checks use (driver,
  user, host, port, database and options of the resolved URL, without the
  password): pointing ``--var db=...`` at another database makes every step
  that touches it a different step, whose earlier passes do not count.

Step outputs (``steps.x.outputs.y``) and ``run.*`` stay symbolic: they are
known only when the run gets there, and differ from run to run.

Hashing what templates read instead of the rendered text is what makes
``plan`` of a large runbook cheap (rendering every template twice was most of
it). Where a template reads something that is not a plain value (a whole
namespace, ``vars[name]``, a method), the definition is rendered and hashed as
before: when in doubt, more of the step counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from runbook.datatree import strings
from runbook.masking import Masker
from runbook.model import Step
from runbook.templating import Placeholder, TemplateFailed, environment, is_template, reads, render, render_data

# Known only when the run gets there (outputs), different in every run (run.id) or per host.
_SYMBOLIC = frozenset({"steps", "run", "result", "host"})
_PLAIN = (str, int, float, bool, type(None))
_UNDEFINED_IN_DEFINITION = "<not a plain value>"


def fingerprint(step: Step, context: Mapping[str, Any], masker: Masker, connections: Mapping[str, str]) -> str:
    """Hash of the step's definition, the values it reads and the databases it uses."""
    # Keys at their defaults are left out: a key added by a later version of runbook (with a
    # default that keeps the old behaviour) leaves the fingerprints of existing steps as they
    # were, so a run resumes across the upgrade without --accept-changes.
    data = step.model_dump(mode="json", exclude={"estimate", "hints", "description"}, exclude_defaults=True)
    read = _values_read(data, context)
    if read is None:
        read = {"rendered": _rendered(data, context)}
    read["connections"] = {name: connection_identity(name, connections, context) for name in sorted(_connection_names(data, context))}
    text = masker.mask(json.dumps({"definition": data, "reads": read}, sort_keys=True, default=str))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def connection_identity(name: str, connections: Mapping[str, str], context: Mapping[str, Any]) -> str:
    """Which database connection ``name`` reaches, without its password: a short hash."""
    template = connections.get(name)
    if template is None:
        return "<unknown connection>"
    try:
        url = render(template, context, f"connections.{name}")
    except TemplateFailed as err:
        return f"<{err.message}>"
    return hashlib.sha256(_without_password(url).encode()).hexdigest()[:16]


def _without_password(url: str) -> str:
    """``url`` with the scheme spelled one way and no password (in userinfo or options)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # not a URL at all: opening it fails later with its own message
        return url
    user = f"{parts.username}@" if parts.username else ""
    where = f"{parts.hostname or ''}:{port}" if port else (parts.hostname or "")
    options = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query) if "password" not in k.lower()))
    return f"{parts.scheme}://{user}{where}{parts.path}" + (f"?{options}" if options else "")


def _values_read(data: Any, context: Mapping[str, Any]) -> dict[str, Any] | None:
    """The value of every name the templates in ``data`` read; None when one is not a plain value."""
    env = environment()
    values: dict[str, Any] = {}
    for source in (text for _, text in strings(data) if is_template(text)):
        try:
            references = reads(source)
        except Exception:  # noqa: BLE001 - a syntax error: rendering reports it
            return None
        for reference in references:
            key = str(reference)
            if reference.parts[0] in _SYMBOLIC or key in values:
                continue
            value: Any = context.get(reference.parts[0], _UNDEFINED_IN_DEFINITION)
            try:
                for part in reference.parts[1:]:
                    value = env.getattr(value, part)
            except Exception:  # noqa: BLE001 - rendering reports it; here it only means "not plain"
                return None
            if not _is_plain(value):
                return None
            values[key] = value
    return values


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _rendered(data: dict[str, Any], context: Mapping[str, Any]) -> Any:
    """The definition rendered with outputs left symbolic (``when`` and ``outputs`` as written)."""
    symbolic = {**context, "steps": Placeholder("steps"), "run": {"id": "<run id>", "dry_run": False}}
    rendered = render_data({k: v for k, v in data.items() if k not in ("when", "outputs")}, symbolic)
    return rendered


def _connection_names(data: Any, context: Mapping[str, Any]) -> set[str]:
    """Every ``connection:`` named in the step, its bodies and its checks."""
    names: set[str] = set()
    for key, value in strings(data):
        if key != "connection":
            continue
        try:
            names.add(render(value, context, "connection") if is_template(value) else value)
        except TemplateFailed:
            names.add(value)
    return names
