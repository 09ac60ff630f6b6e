"""The schema at its newest revision (``fdf1b7f6bbe1``), as the v2 code sees it.

The alembic migrations are the source of truth for the database; these
classes mirror them. v1 predates ``plan_subscriptions.subscriber_id`` and so
never selects or inserts that column (see ``releases``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Alembic batch mode on SQLite rebuilds tables from reflection and can only
# carry over, or drop, constraints that have names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

SUBSCRIBER_STATUSES = ("active", "suspended", "terminated")
SUBSCRIPTION_STATUSES = ("active", "cancelled")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Audit columns, revision c6b208ba7659.
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str | None] = mapped_column(String(100))


class Subscriber(Base):
    """One service (a RADIUS login) of a customer; a customer may have several."""

    __tablename__ = "subscribers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    service_type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Soft delete, revision c64d9a16fa9d.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class InternetPlan(Base):
    __tablename__ = "internet_plans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    download_mbps: Mapped[int] = mapped_column(Integer)
    upload_mbps: Mapped[int] = mapped_column(Integer)
    data_cap_gb: Mapped[int | None] = mapped_column(Integer)
    monthly_price_cents: Mapped[int] = mapped_column(Integer)


class PlanSubscription(Base):
    __tablename__ = "plan_subscriptions"

    # A time-ordered UUID string, as the source system's ids ('subscription-id-1', "abc-123")
    # are strings; the backfill walks it in keyset batches like any ordered unique key.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("internet_plans.id"))
    status: Mapped[str] = mapped_column(String(20))
    start_date: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The change, revision ee4f9c4fb5b3: nullable until the backfill has run.
    subscriber_id: Mapped[str | None] = mapped_column(ForeignKey("subscribers.id"), index=True)


class UsageRecord(Base):
    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("plan_subscriptions.id"), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
