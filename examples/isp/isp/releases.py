"""What differs between the code released as v1 and as v2.

v1 is the code before the change: it does not know
``plan_subscriptions.subscriber_id``, never selects or inserts it, and finds a
subscription's subscriber with an unordered "first subscriber of the customer"
lookup (the arbitrary ``.first()`` the change removes). v2 requires
``subscriber_id`` on creation, reads it in the jobs, and fails with the seed's
``ProgrammingError`` when the column has not been migrated yet.

The API server and the jobs take a ``Release`` and never branch on a version
string themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Select, select

from isp.ids import new_id
from isp.models import Customer, InternetPlan, PlanSubscription, Subscriber

SUBSCRIPTIONS = PlanSubscription.__table__
# The columns v1 was written against; v2 adds subscriber_id.
V1_COLUMNS = (
    PlanSubscription.id,
    PlanSubscription.customer_id,
    PlanSubscription.plan_id,
    PlanSubscription.status,
    PlanSubscription.start_date,
    PlanSubscription.created_at,
)
V2_COLUMNS = (*V1_COLUMNS, PlanSubscription.subscriber_id)


@dataclass(frozen=True)
class SubscriptionRequest:
    """The body of POST /api/v1/services/internet-plans/subscriptions."""

    plan_id: str
    customer_id: str
    subscriber_id: str | None
    start_date: datetime

    @classmethod
    def parse(cls, body: object) -> SubscriptionRequest:
        """Raises ValueError, which the API answers with 422."""
        if not isinstance(body, dict):
            raise ValueError("request body must be a JSON object")
        missing = [name for name in ("plan_id", "customer_id", "start_date") if not body.get(name)]
        if missing:
            raise ValueError(f"missing field(s): {', '.join(missing)}")
        try:
            start_date = datetime.fromisoformat(str(body["start_date"]))
        except ValueError as err:
            raise ValueError(f"start_date is not an ISO 8601 date-time: {body['start_date']!r}") from err
        subscriber_id = body.get("subscriber_id")
        return cls(
            plan_id=str(body["plan_id"]),
            customer_id=str(body["customer_id"]),
            subscriber_id=str(subscriber_id) if subscriber_id else None,
            start_date=start_date,
        )


@dataclass(frozen=True)
class JobSubscription:
    """A subscription as the billing and monitoring jobs see it."""

    id: str
    customer_id: str
    plan_id: str
    subscriber_id: str | None


class SkipSubscription(Exception):
    """The job leaves this subscription for a later run; reason is the logged event name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SubscriptionFailed(Exception):
    """The job could not process this subscription; reason is the logged event name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Release(Protocol):
    name: str

    def startup_check(self, conn: Connection) -> None: ...

    def create_subscription(self, conn: Connection, request: SubscriptionRequest) -> dict[str, Any]: ...

    def job_subscriptions(self, conn: Connection, limit: int) -> list[JobSubscription]: ...

    def subscriber_for(self, conn: Connection, subscription: JobSubscription) -> str:
        """The subscriber to bill or monitor; raises SkipSubscription or SubscriptionFailed."""
        ...


class V1:
    name = "v1"

    def startup_check(self, conn: Connection) -> None:
        conn.execute(select(*V1_COLUMNS).limit(1))

    def create_subscription(self, conn: Connection, request: SubscriptionRequest) -> dict[str, Any]:
        _check_customer_and_plan(conn, request)
        new_id = _insert(conn, request, subscriber_id=None)
        return _fetch(conn, new_id, V1_COLUMNS)

    def job_subscriptions(self, conn: Connection, limit: int) -> list[JobSubscription]:
        rows = conn.execute(_active_subscriptions(V1_COLUMNS, limit))
        return [JobSubscription(row.id, row.customer_id, row.plan_id, None) for row in rows]

    def subscriber_for(self, conn: Connection, subscription: JobSubscription) -> str:
        # The old lookup: any subscriber of the customer, no order, no status
        # or soft-delete filter; wrong for customers with several services.
        found = conn.execute(
            select(Subscriber.id).where(Subscriber.customer_id == subscription.customer_id).limit(1)
        ).scalar()
        if found is None:
            raise SkipSubscription("no_subscriber_found")
        return found


class V2:
    name = "v2"

    def startup_check(self, conn: Connection) -> None:
        conn.execute(select(*V2_COLUMNS).limit(1))

    def create_subscription(self, conn: Connection, request: SubscriptionRequest) -> dict[str, Any]:
        if request.subscriber_id is None:
            raise ValueError("subscriber_id is required")
        _check_customer_and_plan(conn, request)
        belongs = conn.execute(
            select(Subscriber.id).where(
                Subscriber.id == request.subscriber_id,
                Subscriber.customer_id == request.customer_id,
                Subscriber.deleted_at.is_(None),
            )
        ).scalar()
        if belongs is None:
            raise ValueError(f"Subscriber {request.subscriber_id} not found for customer {request.customer_id}")
        new_id = _insert(conn, request, subscriber_id=request.subscriber_id)
        return _fetch(conn, new_id, V2_COLUMNS)

    def job_subscriptions(self, conn: Connection, limit: int) -> list[JobSubscription]:
        rows = conn.execute(_active_subscriptions(V2_COLUMNS, limit))
        return [JobSubscription(row.id, row.customer_id, row.plan_id, row.subscriber_id) for row in rows]

    def subscriber_for(self, conn: Connection, subscription: JobSubscription) -> str:
        if subscription.subscriber_id is None:
            raise SkipSubscription("subscriber_id_not_set")
        deleted_at = conn.execute(
            select(Subscriber.deleted_at).where(Subscriber.id == subscription.subscriber_id)
        ).one_or_none()
        # Possible only if the FK was not enforced (SQLite without the pragma)
        # or a backfill ignored soft deletes: both mean the backfill is wrong.
        if deleted_at is None:
            raise SubscriptionFailed("subscriber_not_found")
        if deleted_at[0] is not None:
            raise SubscriptionFailed("subscriber_deleted")
        return subscription.subscriber_id


RELEASES: dict[str, Release] = {"v1": V1(), "v2": V2()}


def _check_customer_and_plan(conn: Connection, request: SubscriptionRequest) -> None:
    if conn.execute(select(Customer.id).where(Customer.id == request.customer_id)).scalar() is None:
        raise ValueError(f"Customer {request.customer_id} not found")
    if conn.execute(select(InternetPlan.id).where(InternetPlan.id == request.plan_id)).scalar() is None:
        raise ValueError(f"Plan {request.plan_id} not found")


def _insert(conn: Connection, request: SubscriptionRequest, subscriber_id: str | None) -> str:
    values: dict[str, Any] = {
        "id": new_id(),
        "customer_id": request.customer_id,
        "plan_id": request.plan_id,
        "status": "active",
        "start_date": request.start_date,
        "created_at": datetime.now(UTC),
    }
    # Only v2 names the column at all, so v1's INSERT works on either schema.
    if subscriber_id is not None:
        values["subscriber_id"] = subscriber_id
    conn.execute(SUBSCRIPTIONS.insert().values(values))
    return str(values["id"])


def _fetch(conn: Connection, subscription_id: str, columns: tuple[Any, ...]) -> dict[str, Any]:
    row = conn.execute(select(*columns).where(PlanSubscription.id == subscription_id)).one()
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in row._mapping.items()}


def _active_subscriptions(columns: tuple[Any, ...], limit: int) -> Select[Any]:
    return select(*columns).where(PlanSubscription.status == "active").order_by(PlanSubscription.id).limit(limit)
