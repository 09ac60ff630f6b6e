"""runbook: stepwise deployment runbooks, enforced by a machine."""

__version__ = "0.1.0"
