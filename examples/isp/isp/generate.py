"""Deterministic demo data with the seed's hard cases in fixed proportions.

Customers are drawn in blocks of 50 whose case mix is fixed (``CASE_BLOCK``)
and whose order is shuffled by the seeded RNG, so every run with the same
``--rows`` and ``--seed`` writes the same rows (ids included) on SQLite and
PostgreSQL, and every case appears once at least 50 customers exist.
Ids are time-ordered UUID strings (plan_subscriptions too, as in the source system).

Cases, by what the resolution rule (README) makes of them:

- resolved: ``single_active`` (one active subscriber), ``active_plus_inactive``
  (one active and one suspended or terminated), ``deleted_plus_active`` (an
  older soft-deleted subscriber whose status still says active, and a live one:
  only the ``deleted_at IS NULL`` filter keeps the deleted one out)
- ambiguous: ``multi_active`` (2 or 3 active subscribers; half of these
  customers have two created at the same instant, so the id tie-break matters)
- unresolved: ``no_subscribers``, ``inactive_only``, ``deleted_only``
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select

from isp.errors import IspError
from isp.models import Customer, InternetPlan, PlanSubscription, Subscriber, UsageRecord
from isp.settings import Settings

CASE_BLOCK: tuple[tuple[str, int], ...] = (
    ("single_active", 42),
    ("active_plus_inactive", 1),
    ("deleted_plus_active", 2),
    ("multi_active", 2),
    ("no_subscribers", 1),
    ("inactive_only", 1),
    ("deleted_only", 1),
)
RESOLUTION = {
    "single_active": "resolved",
    "active_plus_inactive": "resolved",
    "deleted_plus_active": "resolved",
    "multi_active": "ambiguous",
    "no_subscribers": "unresolved",
    "inactive_only": "unresolved",
    "deleted_only": "unresolved",
}
# name, download, upload (Mbps), data cap (GB, None = unlimited), monthly price (cents)
PLANS: tuple[tuple[str, int, int, int | None, int], ...] = (
    ("DSL 25", 25, 5, 200, 2999),
    ("Wireless 50", 50, 10, 300, 3499),
    ("Fiber 100", 100, 20, 500, 3999),
    ("Fiber 500", 500, 100, 1000, 5999),
    ("Fiber 1000", 1000, 500, None, 7999),
)
SECOND_SUBSCRIPTION_RATE = 0.2
CANCELLED_RATE = 0.05
SERVICE_TYPES = ("fiber", "dsl", "wireless")
EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
GB = 1024**3
# RFC 4122 variant bits for the first hex digit of the fourth group.
_VARIANT = {digit: "89ab"[int(digit, 16) % 4] for digit in "0123456789abcdef"}
# Customers per batch: large enough for executemany and COPY to pay off,
# small enough to keep a 1,000,000-row run in modest memory.
CHUNK_CUSTOMERS = 20_000


@dataclass
class Chunk:
    customers: list[dict[str, Any]] = field(default_factory=list)
    subscribers: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)


class _Builder:
    """Draws every value from one seeded RNG, in a fixed order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids = 0
        self.customers = 0
        self.subscribers = 0
        self.subscriptions = 0
        self.cases = {case: {"customers": 0, "subscriptions": 0} for case, _ in CASE_BLOCK}

    def uuid(self) -> str:
        """A time-ordered id in the UUIDv7 layout whose 48-bit time field holds a sequence number.

        Ordered keys append to the primary key and customer_id indexes instead
        of landing on random pages, which cuts a 1,000,000-row load by about a
        fifth; a sequence, unlike a clock, keeps runs reproducible. Formatted
        by hand because uuid.UUID() costs seconds over 2,000,000 ids.
        """
        self.ids += 1
        h = f"{self.ids:012x}{self.rng.getrandbits(80):020x}"
        return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"

    def plans(self) -> list[dict[str, Any]]:
        return [
            {
                "id": self.uuid(),
                "name": name,
                "download_mbps": down,
                "upload_mbps": up,
                "data_cap_gb": cap,
                "monthly_price_cents": price,
            }
            for name, down, up, cap, price in PLANS
        ]

    def chunks(self, rows: int, plans: list[dict[str, Any]]) -> Iterator[Chunk]:
        chunk = Chunk()
        while self.subscriptions < rows:
            block = [case for case, count in CASE_BLOCK for _ in range(count)]
            self.rng.shuffle(block)
            for case in block:
                if self.subscriptions >= rows:
                    break
                self._customer(case, rows, plans, chunk)
                if len(chunk.customers) >= CHUNK_CUSTOMERS:
                    yield chunk
                    chunk = Chunk()
        if chunk.customers:
            yield chunk

    def _customer(self, case: str, rows: int, plans: list[dict[str, Any]], chunk: Chunk) -> None:
        rng = self.rng
        self.customers += 1
        customer_id = self.uuid()
        joined = EPOCH + timedelta(seconds=rng.randrange(365 * 86400))
        chunk.customers.append(
            {
                "id": customer_id,
                "name": f"Customer {self.customers}",
                "email": f"customer{self.customers}@example.net",
                "created_at": joined,
            }
        )
        for status, created, deleted in self._subscriber_specs(case, joined):
            self.subscribers += 1
            chunk.subscribers.append(
                {
                    "id": self.uuid(),
                    "customer_id": customer_id,
                    "username": f"user{self.subscribers:07d}",
                    "service_type": rng.choice(SERVICE_TYPES),
                    "status": status,
                    "created_at": created,
                    "deleted_at": deleted,
                }
            )
        count = 2 if rng.random() < SECOND_SUBSCRIPTION_RATE else 1
        count = min(count, rows - self.subscriptions)
        self.cases[case]["customers"] += 1
        self.cases[case]["subscriptions"] += count
        for _ in range(count):
            self.subscriptions += 1
            subscription_id = self.uuid()
            plan = rng.choice(plans)
            created = joined + timedelta(days=rng.randrange(1, 400))
            chunk.subscriptions.append(
                {
                    "id": subscription_id,
                    "customer_id": customer_id,
                    "plan_id": plan["id"],
                    "status": "cancelled" if rng.random() < CANCELLED_RATE else "active",
                    "start_date": created,
                    "created_at": created,
                }
            )
            cap = plan["data_cap_gb"]
            # Up to 120% of the cap, so about a third of capped plans cross the 80% alert line.
            ceiling = int(1.2 * cap * GB) if cap else 2000 * GB
            chunk.usage.append(
                {
                    "subscription_id": subscription_id,
                    "bytes": rng.randrange(ceiling),
                    "recorded_at": created + timedelta(days=30),
                }
            )

    def _subscriber_specs(self, case: str, joined: datetime) -> list[tuple[str, datetime, datetime | None]]:
        """(status, created_at, deleted_at) of each subscriber of a customer of this case."""
        rng = self.rng

        def later(start: datetime, days: int = 200) -> datetime:
            return start + timedelta(days=rng.randrange(1, days), seconds=rng.randrange(86400))

        first = later(joined)
        match case:
            case "single_active":
                return [("active", first, None)]
            case "active_plus_inactive":
                return [(rng.choice(("suspended", "terminated")), first, None), ("active", later(first), None)]
            case "deleted_plus_active":
                deleted = later(first)
                return [("active", first, deleted), ("active", later(deleted), None)]
            case "multi_active":
                second = first if rng.random() < 0.5 else later(first)
                extra = [("active", later(second), None)] if rng.random() < 0.3 else []
                return [("active", first, None), ("active", second, None), *extra]
            case "no_subscribers":
                return []
            case "inactive_only":
                return [(rng.choice(("suspended", "terminated")), first, None)]
            case "deleted_only":
                return [(rng.choice(("active", "terminated")), first, later(first))]
        raise ValueError(f"unknown case {case!r}")


def generate(settings: Settings, rows: int, seed: int) -> dict[str, Any]:
    """Insert the data; returns the summary the CLI prints."""
    if rows < 1:
        raise IspError("--rows must be at least 1")
    builder = _Builder(seed)
    engine = settings.engine()
    try:
        with engine.begin() as conn:
            if conn.execute(select(func.count()).select_from(PlanSubscription)).scalar():
                raise IspError("plan_subscriptions is not empty; run `ispctl reset` and `ispctl init` first")
            plans = builder.plans()
            _bulk_insert(conn, InternetPlan.__table__, plans)
            for chunk in builder.chunks(rows, plans):
                _bulk_insert(conn, Customer.__table__, chunk.customers)
                _bulk_insert(conn, Subscriber.__table__, chunk.subscribers)
                _bulk_insert(conn, PlanSubscription.__table__, chunk.subscriptions)
                _bulk_insert(conn, UsageRecord.__table__, chunk.usage)
    finally:
        engine.dispose()
    resolution = {"resolved": 0, "ambiguous": 0, "unresolved": 0}
    for case, counts in builder.cases.items():
        resolution[RESOLUTION[case]] += counts["subscriptions"]
    return {
        "rows": rows,
        "seed": seed,
        "customers": builder.customers,
        "subscribers": builder.subscribers,
        "plans": len(PLANS),
        "usage_records": rows,  # one per subscription
        "cases": builder.cases,
        "resolution": resolution,
    }


def _bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.driver != "psycopg":
        conn.execute(insert(table), rows)
        return
    # PostgreSQL runs an executemany as one INSERT per row: COPY loads the
    # same rows about five times faster, inside the same transaction.
    columns = list(rows[0])
    copy_sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with conn.connection.driver_connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])

