"""The worker tasks: usage billing and data-cap monitoring.

Each run takes the first ``limit`` active subscriptions by id, finds each
one's subscriber the way the deployed release does, and logs to
``<home>/logs/celery-worker.log`` under the logger ``usage_billing`` or
``usage_monitoring``; the run ends with one summary line holding the same
JSON the command prints. Under v2 a subscription whose ``subscriber_id`` is
unset is skipped and logged as ``subscriber_id_not_set``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, func, select
from sqlalchemy.exc import DBAPIError

from isp.errors import IspError, describe_db_error
from isp.lifecycle import deployed_version
from isp.models import InternetPlan, UsageRecord
from isp.releases import RELEASES, JobSubscription, SkipSubscription, SubscriptionFailed
from isp.settings import Settings, file_logger

GB = 1024**3
OVERAGE_CENTS_PER_GB = 100
ALERT_AT = 0.8  # share of the data cap that raises an alert

# (logger, subscription, subscriber id, plan, bytes used) -> count for the task's metric
Handler = Callable[[logging.Logger, JobSubscription, str, Row[Any], int], int]


@dataclass(frozen=True)
class Task:
    logger_name: str
    handle: Handler
    metric: str | None = None


def _bill(log: logging.Logger, sub: JobSubscription, subscriber_id: str, plan: Row[Any], used: int) -> int:
    over_gb = 0 if plan.data_cap_gb is None else max(0, -(-(used - plan.data_cap_gb * GB) // GB))
    amount = plan.monthly_price_cents + over_gb * OVERAGE_CENTS_PER_GB
    log.info(
        "billed subscription_id=%s subscriber_id=%s bytes=%d amount_cents=%d", sub.id, subscriber_id, used, amount
    )
    return 0


def _monitor(log: logging.Logger, sub: JobSubscription, subscriber_id: str, plan: Row[Any], used: int) -> int:
    if plan.data_cap_gb is None or used < ALERT_AT * plan.data_cap_gb * GB:
        return 0
    log.warning(
        "data_cap_alert subscription_id=%s subscriber_id=%s used_percent=%d",
        sub.id,
        subscriber_id,
        used * 100 // (plan.data_cap_gb * GB),
    )
    return 1


TASKS: dict[str, Task] = {
    "process_usage_billing": Task("usage_billing", _bill),
    "monitor_data_cap_usage": Task("usage_monitoring", _monitor, metric="alerts_created"),
}


def run_task(settings: Settings, name: str, limit: int) -> dict[str, Any]:
    """Run one task; returns the summary the CLI prints as JSON."""
    task = TASKS[name]
    release = RELEASES[deployed_version(settings)]
    log = file_logger(task.logger_name, settings.worker_log)
    log.info("%s started release=%s limit=%d", name, release.name, limit)
    counts = {"processed": 0, "skipped": 0, "failed": 0, "metric": 0}
    engine = settings.engine()
    try:
        with engine.connect() as conn:
            try:
                subscriptions = release.job_subscriptions(conn, limit)
            except DBAPIError as err:
                line = describe_db_error(err)
                log.error("%s failed: %s", name, line)
                raise IspError(f"{name} failed: {line}") from err
            plans = {plan.id: plan for plan in conn.execute(select(InternetPlan.__table__))}
            used = _bytes_used(conn, (sub.id for sub in subscriptions))
            for sub in subscriptions:
                try:
                    subscriber_id = release.subscriber_for(conn, sub)
                except SkipSubscription as skip:
                    log.warning("%s subscription_id=%s customer_id=%s", skip.reason, sub.id, sub.customer_id)
                    counts["skipped"] += 1
                    continue
                except SubscriptionFailed as failure:
                    log.error("%s subscription_id=%s subscriber_id=%s", failure.reason, sub.id, sub.subscriber_id)
                    counts["failed"] += 1
                    continue
                counts["metric"] += task.handle(log, sub, subscriber_id, plans[sub.plan_id], used.get(sub.id, 0))
                counts["processed"] += 1
    finally:
        engine.dispose()
    summary: dict[str, Any] = {"task": name, **{k: counts[k] for k in ("processed", "skipped", "failed")}}
    if task.metric:
        summary[task.metric] = counts["metric"]
    log.info("%s complete %s", name, json.dumps(summary))
    return summary


def _bytes_used(conn: Connection, subscription_ids: Iterable[str]) -> dict[str, int]:
    ids = list(subscription_ids)
    if not ids:
        return {}
    rows = conn.execute(
        select(UsageRecord.subscription_id, func.sum(UsageRecord.bytes))
        .where(UsageRecord.subscription_id.in_(ids))
        .group_by(UsageRecord.subscription_id)
    )
    return {subscription_id: int(total) for subscription_id, total in rows}
