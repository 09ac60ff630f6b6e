"""Reading the words of a checklist: plain text, code spans, ids, durations."""

from __future__ import annotations

import re

_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]*)[^)]*\)")
_STRONG = re.compile(r"(\*\*|__)(.+?)\1")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_SPACES = re.compile(r"[ \t]+")


def plain(markdown: str) -> str:
    """Markdown inline text as a person reads it: no emphasis markers, backticks or escapes."""
    text = _CODE.sub(lambda m: m[2].strip(), markdown)
    text = _LINK.sub(lambda m: m[1] if not m[2] or m[1] == m[2] else f"{m[1]} ({m[2]})", text)
    text = _STRONG.sub(r"\2", text)
    text = _ESCAPE.sub(r"\1", text)
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n")).strip()


def code_spans(markdown: str) -> list[str]:
    return [m[2].strip() for m in _CODE.finditer(markdown)]


def strong_label(markdown: str) -> tuple[str, str] | None:
    """``**Label**: rest`` or ``**Label:** rest`` -> (label, rest)."""
    found = re.match(r"^\s*(?:\*\*|__)(.+?)(?:\*\*|__)\s*(?::\s*)?(.*)$", markdown, re.S)
    if found is None:
        return None
    label, rest = found[1].strip(), found[2].strip()
    if label.endswith(":"):
        label = label[:-1].strip()
    elif not re.match(r"^\s*(?:\*\*|__).+?(?:\*\*|__)\s*:", markdown) and not markdown.rstrip().endswith(("**", "__")):
        return None  # bold words inside a sentence, not a label
    return label, rest


def dashed_label(markdown: str) -> tuple[str, str] | None:
    """``**Change Technician** - @dbre`` -> (label, value)."""
    found = re.match(r"^\s*(?:\*\*|__)(.+?)(?:\*\*|__)\s+[-–—]\s+(.+)$", markdown, re.S)
    return (found[1].strip().rstrip(":"), found[2].strip()) if found else None


# ---------------------------------------------------------------- ids

_STOPWORDS = frozenset(
    "a an the and or of for to on in into with from by via at as is are be it its this that these those "
    "step steps then now all any".split()
)
_FILLER_VERBS = frozenset("run execute perform do".split())
# Words that name what a step does; a step about one gets the short id operators type (--only deploy).
_ACTIONS = {
    "migrate": ("migration", "migrations", "migrate", "migrating"),
    "backfill": ("backfill", "backfilling"),
    "deploy": ("deploy", "deployment", "deploying", "release", "rollout"),
    "backup": ("backup", "backups"),
    "verify": ("verify", "verification", "validate", "validation"),
    "restart": ("restart", "restarting"),
}
_ACTION_OF = {word: action for action, words in _ACTIONS.items() for word in words}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", plain(text).lower())


def slug(text: str, *, limit: int = 4, separator: str = "_") -> str:
    """A few significant words of ``text`` as an id: ``Check Logs for Errors`` -> ``check_logs_errors``."""
    found = [w for w in words(text) if w not in _STOPWORDS and not w.isdigit()]
    while len(found) > 1 and found[0] in _FILLER_VERBS:
        found.pop(0)
    text = separator.join(found[:limit])[:48].strip(separator)
    return text or "step"


def action(text: str) -> str | None:
    """The action word a title ends on, if any: ``Run Database Migration`` -> ``migrate``;
    the last one wins, as in ``Post-Deployment Verification`` -> ``verify``."""
    found = [_ACTION_OF[w] for w in words(text) if w in _ACTION_OF]
    return found[-1] if found else None


def stems(text: str) -> set[str]:
    """Word stems for matching a phrase to a title (``deploy code`` ~ ``Deploy Code Changes``)."""
    return {w[:5] for w in words(text) if w not in _STOPWORDS and w not in ("run", "execute", "perform", "do") and not w.isdigit()}


class Ids:
    """Unique step ids, each taken once."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def take(self, wanted: str) -> str:
        wanted = re.sub(r"[^a-z0-9_-]+", "_", wanted.lower()).strip("_-")[:60] or "step"
        found, n = wanted, 2
        while found in self.taken:
            found, n = f"{wanted}_{n}", n + 1
        self.taken.add(found)
        return found


# ---------------------------------------------------------------- durations

_UNITS = {
    "ms": "ms",
    "millisecond": "ms",
    "milliseconds": "ms",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
}
_UNIT = "|".join(sorted(_UNITS, key=len, reverse=True))
_NUMBER = r"\d+(?:\.\d+)?"
_RANGE = re.compile(rf"({_NUMBER})\s*({_UNIT})?\s*(?:-|–|—|to)\s*({_NUMBER})\s*({_UNIT})\b", re.I)
_SINGLE = re.compile(rf"~?\s*({_NUMBER})\s*({_UNIT})\b", re.I)
_PARENTHESIS = re.compile(r"\s*\(([^()]*)\)\s*$")
_HEDGES = re.compile(r"\b(?:about|approx\.?|approximately|roughly|around|up to|max|maximum|min|minimum|est\.?|estimated|takes?|eta)\b", re.I)


_UNIT_FIRST = re.compile(rf"\(({_UNIT})\)\W*({_NUMBER})\b", re.I)


def estimate(text: str) -> str | None:
    """``15-20 minutes`` -> ``15m-20m``, ``(5 seconds)`` -> ``5s``, ``Time (mins) - 60`` -> ``60m``;
    None if no duration is written."""
    text = plain(text)
    found = _UNIT_FIRST.search(text)
    if found:
        return f"{_number(found[2])}{_UNITS[found[1].lower()]}"
    found = _RANGE.search(text)
    if found:
        low_unit = _UNITS[(found[2] or found[4]).lower()]
        high_unit = _UNITS[found[4].lower()]
        return f"{_number(found[1])}{low_unit}-{_number(found[3])}{high_unit}"
    found = _SINGLE.search(text)
    if found:
        return f"{_number(found[1])}{_UNITS[found[2].lower()]}"
    return None


def _number(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def split_estimate(title: str) -> tuple[str, str | None]:
    """A title with a trailing ``(2-10 minutes)``: the title without it, and the estimate."""
    found = _PARENTHESIS.search(title)
    if found:
        value = estimate(found[1])
        rest = _SINGLE.sub("", _RANGE.sub("", found[1]))
        if value is not None and _HEDGES.sub("", rest).strip(" ~,.:") == "":
            return title[: found.start()].strip(), value
    return title, None


_STEP_NUMBER = re.compile(r"^\s*(?:(?:step|phase|stage)\s+)?(\d+(?:\.\d+)*)[.:)]?\s+(?:[-–—:]\s*)?", re.I)
_STEP_WORD = re.compile(r"^\s*(?:step|phase|stage)\s+(\d+(?:\.\d+)*)\s*[:.)\-–—]?\s*", re.I)


def step_number(title: str) -> tuple[str | None, str]:
    """``Step 4.1: Check logs`` / ``4.1 Check logs`` / ``2. Backfill`` -> (``4.1``, the rest)."""
    text = plain(title)
    found = _STEP_WORD.match(text) or _STEP_NUMBER.match(text)
    if found is None:
        return None, text
    rest = text[found.end() :].strip()
    return found[1], rest or text


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
