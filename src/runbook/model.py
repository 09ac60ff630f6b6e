"""The runbook file format as pydantic models.

Common keys of steps and checks are modelled here; the keys of each step or
check *kind* live in that kind's own ``Params`` model (``runbook.steps`` and
``runbook.checks``) and are validated by the loader, which gathers them into
``params`` so this module needs to know nothing about kinds.
"""

from __future__ import annotations

import math

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from runbook.httpclient import TlsOptions

STEP_ID_PATTERN = r"^[a-z0-9_-]+$"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


MAX_DURATION = 366 * 86400.0


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a duration must be a finite number of seconds, not negative, got {value!r}")
        if value > MAX_DURATION:
            # Past this, adding it to a date overflows (a throttle of 99999999999h killed a backfill).
            raise ValueError(f"a duration longer than {MAX_DURATION // 86400:.0f} days is surely a mistake, got {value!r}")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text and _DURATION_PART.sub("", text) == "":
            total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
            if total > MAX_DURATION:
                raise ValueError(f"a duration longer than {MAX_DURATION // 86400:.0f} days is surely a mistake, got {value!r}")
            return total
        try:
            return parse_duration(float(text))
        except ValueError:
            pass
    raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {value!r}")


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m" + (f"{secs}s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h" + (f"{minutes}m" if minutes else "")


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Estimate(_Strict):
    """How long something should take: one duration or a ``low-high`` range."""

    low: float
    high: float

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        if isinstance(value, str) and "-" in value.strip().lstrip("-"):
            low, high = value.split("-", 1)
            low_s, high_s = parse_duration(low), parse_duration(high)
            if low_s > high_s:
                raise ValueError(f"estimate range {value!r} runs backwards")
            return {"low": low_s, "high": high_s}
        seconds = parse_duration(value)
        return {"low": seconds, "high": seconds}

    def __str__(self) -> str:
        if self.low == self.high:
            return format_duration(self.high)
        return f"{format_duration(self.low)}-{format_duration(self.high)}"


class Contact(_Strict):
    role: str
    name: str | None = None
    contact: str | None = None
    when: str | None = None


class Metadata(_Strict):
    owner: str | None = None
    priority: str | None = None
    risk: str | None = None
    estimate: Estimate | None = None
    version: str | None = None
    tags: list[str] = []
    escalation: list[Contact] = []
    links: dict[str, str] = {}


class Var(_Strict):
    """A runbook variable. Precedence, lowest first: ``default``, the
    environment's override, the OS environment variable named by ``env``,
    ``--var`` on the command line."""

    default: Any = None
    env: str | None = None
    required: bool = False
    secret: bool = False
    description: str | None = None
    choices: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # ``name: value`` is a var with that default.
        if isinstance(value, dict):
            return value
        return {"default": value}


class ApprovalPolicy(_Strict):
    """``approval:`` of a step or an environment: how many distinct people must approve, and who may.

    ``approvers`` names OS users, or ``group:NAME`` for a group of ``approvals.groups``;
    empty means anyone. ``not_by: starter`` excludes whoever started the run."""

    required: int = Field(1, ge=1, le=20)
    approvers: list[str] = Field(default_factory=list)
    not_by: Literal["starter"] | None = None


class ApprovalSettings(_Strict):
    """The runbook's top-level ``approvals:``: groups named once, and whether ``approve --by`` may name someone else."""

    allow_delegation: bool = False
    groups: dict[str, list[str]] = {}


class Environment(_Strict):
    description: str | None = None
    vars: dict[str, Any] = {}
    protected: bool = False
    approval: ApprovalPolicy | None = None
    # The fleet (runbook.fleet.inventory): hosts inline (name -> address, port, user, vars)
    # or a list of names, groups of them, or an Ansible inventory file; ssh's config file.
    hosts: dict[str, dict[str, Any] | None] | list[str] = {}
    groups: dict[str, list[str]] = {}
    inventory: str | None = None
    ssh_config: str | None = None


_COUNT_OR_PERCENT = re.compile(r"^\d+%?$")


def _count_or_percent(value: Any) -> Any:
    """``2`` or ``"25%"`` (of the step's hosts)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _COUNT_OR_PERCENT.match(value.strip()):
        return value.strip()
    raise ValueError(f"expected a count (2) or a percentage of the hosts (25%), got {value!r}")


CountOrPercent = Annotated[int | str, BeforeValidator(_count_or_percent)]


# Step-level lists and mappings default through a factory: a literal ``[]`` default is
# deep-copied by pydantic for every step (a fifth of validating 20,000 steps).


class Check(_Strict):
    """``check: KIND`` plus the kind's keys (gathered into ``params``)."""

    check: str
    name: str | None = None
    description: str | None = None
    on_fail: Literal["halt", "skip", "warn"] = "halt"
    timeout: Duration | None = None
    # When a resume re-checks this gate: "auto" while its step is on the frontier of what
    # has been done (no later passed step needs it), "always", or "never".
    recheck: Literal["auto", "always", "never"] = "auto"
    # Hosts (a group, or host names) the check runs on over ssh; holds when it holds on each.
    on: str | list[str] | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.check


class Retries(_Strict):
    count: int = Field(0, ge=0, le=100)
    delay: Duration = 0.0
    backoff: float = Field(1.0, ge=1.0, le=10.0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"count": value}
        if isinstance(value, (dict, Retries)):
            return value
        # pydantic would say "a valid dictionary", hiding that a bare count is fine too.
        raise ValueError(f"expected a count or a mapping with count, delay, backoff, got {value!r}")


class StepBody(_Strict):
    """What runs: a kind and its keys. Used for rollbacks and dry-run forms."""

    kind: str
    title: str | None = None
    timeout: Duration | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class Step(_Strict):
    id: Annotated[str, Field(pattern=STEP_ID_PATTERN, max_length=64)]
    kind: str
    title: str | None = None
    description: str | None = None
    needs: list[str] = Field(default_factory=list)
    when: str | None = None
    preconditions: list[Check] = Field(default_factory=list)
    gates: list[Check] = Field(default_factory=list)
    confirm: str | None = None
    approval: ApprovalPolicy | None = None
    dry_run: Literal["skip", "safe"] | StepBody | None = None
    rollback: StepBody | None = None
    irreversible: bool = False
    on_failure: Literal["halt", "rollback"] | None = None
    timeout: Duration | None = None
    retries: Retries = Retries()
    estimate: Estimate | None = None
    hints: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    uses: str | None = None
    # The fleet: hosts the step runs on over ssh, in batches of ``serial`` hosts with at most
    # ``parallel`` at once, stopping after a batch with more than ``max_fail`` failed hosts.
    on: str | list[str] | None = None
    serial: CountOrPercent | None = None
    max_fail: CountOrPercent = 0
    parallel: int | None = Field(None, ge=1, le=1000)
    # Runs at the same time as the adjacent steps that have it too (runbook.fleet.side_by_side).
    concurrent: bool = False
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("needs", mode="before")
    @classmethod
    def _one_need(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def label(self) -> str:
        return self.title or self.id


class RollbackOption(_Strict):
    """A named rollback procedure (the seed's "Option 1/2/3")."""

    id: Annotated[str, Field(pattern=STEP_ID_PATTERN, max_length=64)]
    title: str | None = None
    description: str | None = None
    use_when: str | None = None
    steps: list[Step] = []


class SuccessCriterion(_Strict):
    description: str
    check: Check | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"description": value}
        return value


NotificationEvent = Literal["start", "success", "failure", "awaiting_approval", "rollback", "refused"]


class Channel(TlsOptions):
    """A notification channel; a webhook's TLS keys are the http step's (``runbook.httpclient``)."""

    type: Literal["console", "file", "webhook"]

    @model_validator(mode="after")
    def _target(self) -> Channel:
        if self.type == "file" and not self.path:
            raise ValueError("a file channel needs 'path'")
        if self.type == "webhook" and not self.url:
            raise ValueError("a webhook channel needs 'url'")
        if self.url and "{{" not in self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {self.url!r}")
        return self

    path: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    timeout: Duration = 5.0
    retries: int = Field(2, ge=0, le=10)
    events: list[NotificationEvent] | None = None


class Message(_Strict):
    title: str | None = None
    body: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"body": value}
        return value


class Notifications(_Strict):
    channels: list[Channel] = [Channel(type="console")]
    messages: dict[NotificationEvent, Message] = {}


class Runbook(_Strict):
    name: Annotated[str, Field(pattern=STEP_ID_PATTERN, max_length=64)]
    description: str | None = None
    metadata: Metadata = Metadata()
    vars: dict[str, Var] = {}
    environments: dict[str, Environment] = {}
    connections: dict[str, str] = {}
    on_failure: Literal["halt", "rollback"] = "halt"
    steps: list[Step]
    rollback: list[RollbackOption] = []
    success_criteria: list[SuccessCriterion] = []
    notifications: Notifications = Notifications()
    approvals: ApprovalSettings = ApprovalSettings()

    @property
    def step_ids(self) -> list[str]:
        return [s.id for s in self.steps]


# Keys that belong to the step itself; every other key of a step mapping is its kind's.
STEP_COMMON_KEYS = frozenset(Step.model_fields) - {"params"} | {"with"}
STEP_BODY_COMMON_KEYS = frozenset(StepBody.model_fields) - {"params"}
CHECK_COMMON_KEYS = frozenset(Check.model_fields) - {"params"}
