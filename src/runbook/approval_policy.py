"""Approval policies: who may approve a step, how many must, and whether they have.

A step's ``approval:`` applies to it; otherwise its environment's ``approval:``
applies to each of its steps that asks for confirmation. Approvers are OS
users (identity.py) or ``group:NAME`` of the runbook's ``approvals.groups``.
Only decisions recorded after the step's latest rejection, for the step's
current definition (fingerprint), count; each person counts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runbook.model import ApprovalPolicy, ApprovalSettings, Runbook, Step

if TYPE_CHECKING:  # runbook.state imports SQLAlchemy: `runbook plan` loads this module and never needs it
    from runbook.state.records import ApprovalRecord

GROUP_PREFIX = "group:"
APPROVED, REJECTED = "approved", "rejected"


def policy_for(runbook: Runbook, env: str, step: Step) -> ApprovalPolicy | None:
    if step.approval is not None:
        return step.approval
    environment = runbook.environments.get(env)
    return environment.approval if environment is not None else None


def pinned(runbook: Runbook, env: str) -> dict[str, Any]:
    """What a run records at its start: each step's approval policy and the runbook's
    approval settings. The run keeps them to its end, whatever the file says by then:
    a policy edited out of the file before a resume must not approve the step."""
    policies = {step.id: policy.model_dump(mode="json") for step in runbook.steps if (policy := policy_for(runbook, env, step)) is not None}
    return {"policies": policies, "settings": runbook.approvals.model_dump(mode="json")}


def from_pinned(recorded: Any, step_id: str) -> tuple[ApprovalPolicy | None, ApprovalSettings] | None:
    """The policy and settings a run recorded at its start (None: a run from before pinning)."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("policies"), dict):
        return None
    raw = recorded["policies"].get(step_id)
    policy = ApprovalPolicy.model_validate(raw) if raw is not None else None
    return policy, ApprovalSettings.model_validate(recorded.get("settings") or {})


def approvers(policy: ApprovalPolicy, settings: ApprovalSettings) -> frozenset[str] | None:
    """The OS users who may approve; None when anyone may."""
    if not policy.approvers:
        return None
    names: set[str] = set()
    for name in policy.approvers:
        if name.startswith(GROUP_PREFIX):
            names.update(settings.groups.get(name.removeprefix(GROUP_PREFIX), []))
        else:
            names.add(name)
    return frozenset(names)


def problems(runbook: Runbook) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with the runbook's policies, by key path (the loader reports them at file:line)."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for group, members in runbook.approvals.groups.items():
        if not members:
            found.append((("approvals", "groups", group), f"approver group {group!r} is empty"))
    places: list[tuple[tuple[str | int, ...], ApprovalPolicy]] = [
        (("steps", i, "approval"), s.approval) for i, s in enumerate(runbook.steps) if s.approval is not None
    ]
    places += [(("environments", name, "approval"), e.approval) for name, e in runbook.environments.items() if e.approval is not None]
    for path, policy in places:
        unknown = False
        for j, name in enumerate(policy.approvers):
            group = name.removeprefix(GROUP_PREFIX)
            if name.startswith(GROUP_PREFIX) and group not in runbook.approvals.groups:
                unknown = True
                known = ", ".join(sorted(runbook.approvals.groups)) or "none defined"
                found.append(((*path, "approvers", j), f"unknown approver group {group!r} (approvals.groups: {known})"))
        allowed = approvers(policy, runbook.approvals)
        if not unknown and allowed is not None and policy.required > len(allowed):
            found.append(((*path, "required"), f"requires {policy.required} approvals but only {len(allowed)} may approve: {', '.join(sorted(allowed))}"))
    return found


def refusal(policy: ApprovalPolicy | None, settings: ApprovalSettings, name: str, starter: str | None) -> str | None:
    """Why ``name`` may not approve under ``policy``; None when they may."""
    if policy is None:
        return None
    if policy.not_by == "starter" and starter is not None and name == starter:
        return f"{name} started this run, and the step's approval policy says not_by: starter"
    allowed = approvers(policy, settings)
    if allowed is not None and name not in allowed:
        return f"{name} is not among the step's approvers ({', '.join(sorted(allowed))})"
    return None


@dataclass(frozen=True)
class Standing:
    """Where a step's approval stands: who approved (counted), the rejection that voids the rest, how many are missing."""

    approved_by: tuple[str, ...]
    rejection: ApprovalRecord | None
    missing: int

    @property
    def satisfied(self) -> bool:
        return self.rejection is None and self.missing == 0


def standing(
    decisions: Iterable[ApprovalRecord], *, policy: ApprovalPolicy | None, settings: ApprovalSettings, fingerprint: str, starter: str | None
) -> Standing:
    """``decisions``: the step's recorded approvals and rejections, oldest first."""
    counted: list[str] = []
    rejection: ApprovalRecord | None = None
    for decision in decisions:
        if decision.decision == REJECTED:
            counted, rejection = [], decision
            continue
        if decision.fingerprint != fingerprint or decision.by in counted:
            continue
        # Judged again here, by the runbook the run is executing: `runbook approve` checked
        # delegation against whatever copy of the runbook its user had at hand.
        os_user = getattr(decision, "os_user", None)
        if os_user is not None and os_user != decision.by and not settings.allow_delegation:
            continue
        if os_user is not None and policy is not None and policy.not_by == "starter" and os_user == starter:
            continue  # the starter approving in another's name is still the starter
        if refusal(policy, settings, decision.by, starter) is None:
            counted.append(decision.by)
            rejection = None
    required = policy.required if policy is not None else 1
    return Standing(tuple(counted), rejection, max(required - len(counted), 0))
