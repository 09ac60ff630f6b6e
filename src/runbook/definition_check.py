"""``runbook validate steps/NAME.yaml``: a step definition checked on its own.

A definition is checked the way a runbook step using it is: inside a minimal
runbook whose one step ``uses`` it, each parameter given as a var of that
runbook (so every value stays a template, checked once rendered), with the
vars, connections and earlier steps the definition reads declared around it.
Every problem found is reported in the definition's own file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runbook.errors import Diagnostic, InvalidRunbook
from runbook.loader import _Checker, _definition_problems, _display_path, without_cyclic_gc
from runbook.templating import TemplateFailed, analyze, is_template
from runbook.yamlsource import SourceMap, load_yaml, read_file

_STEP_ID = "definition"
_TOP_LEVEL_STEPS = re.compile(r"^steps[ \t]*:", re.MULTILINE)


def is_step_definition(path: Path) -> bool:
    """Whether the file is a step definition rather than a runbook: no ``steps``, and
    ``step`` or ``params`` or a place in a ``steps/`` directory."""
    try:
        text = read_file(path, str(path))
        if _TOP_LEVEL_STEPS.search(text):
            return False  # a runbook, told without parsing it twice (45,000 steps take seconds)
        data = load_yaml(text, str(path)).data
    except InvalidRunbook:
        return False  # reported as the runbook it may be meant to be
    if not isinstance(data, dict) or "steps" in data:
        return False
    return bool({"step", "params"} & set(data)) or path.parent.name == "steps"


def check_definition(path: Path, *, strict: bool = False) -> list[Diagnostic]:
    """The definition's warnings; ``InvalidRunbook`` listing its errors."""
    display = _display_path(path)
    document = load_yaml(read_file(path, display), display)
    problems = _definition_problems(document.data)
    if problems:
        raise InvalidRunbook([document.source.diagnostic(key_path, message) for key_path, message in problems])
    params = document.data.get("params") or {}
    checker = _Checker(SourceMap(f"{display} (as used by a runbook)"), path.parent)
    with without_cyclic_gc():
        checker.check(_around(path.name, params, document.data["step"]))
    diagnostics = []
    for found in dict.fromkeys(checker.diagnostics):
        if found.file == display or found.file != checker.source.file:
            diagnostics.append(found)
        elif found.severity == "error":
            # A problem of the step as a whole (none is expected): shown at the top of the definition.
            diagnostics.append(Diagnostic(display, 1, 1, "step", found.message))
        # The use's own warnings (no rollback, say) are the runbook's to settle.
    warnings = [d for d in diagnostics if d.severity == "warning"]
    errors = [d for d in diagnostics if d.severity == "error"]
    if strict:
        errors += [Diagnostic(w.file, w.line, w.col, w.path, w.message + " (--strict)") for w in warnings]
        warnings = []
    if errors:
        raise InvalidRunbook(sorted(errors, key=lambda d: (d.file, d.line, d.col)) + warnings)
    return warnings


def _around(file_name: str, params: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """A minimal runbook using the definition, declaring what the definition reads of a runbook."""
    var_names, step_ids, connections = set(params), set(), set()
    for value, key in _values(step):
        if key == "connection" and isinstance(value, str) and not is_template(value):
            connections.add(value)
        if not isinstance(value, str) or not is_template(value):
            continue
        try:
            references = analyze(value).references
        except TemplateFailed:
            continue  # reported with the step
        for ref in references:
            if ref.parts[0] == "vars" and len(ref.parts) > 1:
                var_names.add(ref.parts[1])
            elif ref.parts[0] == "steps" and len(ref.parts) > 1:
                step_ids.add(ref.parts[1])
    earlier = [{"id": i, "kind": "manual", "instruction": "an earlier step"} for i in sorted(step_ids - {_STEP_ID})]
    return {
        "name": "definition-check",
        "vars": {name: None for name in sorted(var_names)},
        "connections": {name: "sqlite://" for name in sorted(connections)},
        "steps": [*earlier, {"id": _STEP_ID, "uses": file_name, "with": {name: _stand_in(name, spec) for name, spec in params.items()}}],
    }


_TYPED_STAND_INS: dict[str, Any] = {"integer": 1, "number": 1, "boolean": False, "duration": "1s"}


def _stand_in(name: str, spec: Any) -> Any:
    """A value for parameter ``name``: its default, else one of its type; a string, list or
    mapping is a var of the runbook around it, so that it stays a template checked once rendered."""
    spec = spec if isinstance(spec, dict) else {}
    if "default" in spec:
        return spec["default"]
    if isinstance(spec.get("choices"), list) and spec["choices"]:
        return spec["choices"][0]
    return _TYPED_STAND_INS.get(spec.get("type", "string"), "{{ vars.%s }}" % name)


def _values(value: Any, key: Any = None) -> list[tuple[Any, Any]]:
    """Every scalar inside ``value``, with the key it is written under."""
    if isinstance(value, dict):
        return [found for k, item in value.items() for found in _values(item, k)]
    if isinstance(value, list):
        return [found for item in value for found in _values(item, key)]
    return [(value, key)]
