#!/usr/bin/env python3
"""ordersctl: drive the orders example application (see README.md beside this file).

  init                     migrate an empty database to revision A (the schema before the change)
  seed --customers N --orders M
                           insert customers and orders (each order names an existing customer's e-mail)
  backup                   copy customers and orders to <home>/backups/orders-<UTC time>.json; prints the path
  deploy --to v1|v2        make that version of the application current; v2 needs orders.customer_id NOT NULL
  status                   the deployed version and the alembic revision, as JSON

The database is ORDERS_DATABASE_URL (else sqlite:///<home>/orders.db); the state
directory (current version, deploy log, backups, deploy freeze) is ORDERS_HOME
(else examples/orders/var/). Errors print one line, `ordersctl: error: ...`, exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
REVISION_A = "3a1f0c2e7b10"
VERSIONS = ("v1", "v2")


class OrdersError(Exception):
    """An operator-facing failure: printed as one line."""


def home() -> Path:
    return Path(os.environ.get("ORDERS_HOME") or HERE / "var").resolve()


def database_url() -> str:
    return os.environ.get("ORDERS_DATABASE_URL") or f"sqlite:///{home() / 'orders.db'}"


def engine() -> sa.Engine:
    url = database_url()
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    return sa.create_engine(url)


def init(_args: argparse.Namespace) -> dict[str, Any]:
    from alembic import command
    from alembic.config import Config

    home().mkdir(parents=True, exist_ok=True)
    config = Config(str(HERE / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url().replace("%", "%%"))
    command.upgrade(config, REVISION_A)
    return {"alembic_current": REVISION_A}


def seed(args: argparse.Namespace) -> dict[str, Any]:
    customers = [{"id": i, "email": f"customer{i}@example.com", "name": f"Customer {i}"} for i in range(1, args.customers + 1)]
    # Deterministic spread: order n belongs to customer (n * 7919) mod N + 1.
    orders = [
        {"id": n, "customer_email": f"customer{(n * 7919) % args.customers + 1}@example.com", "total_cents": 100 + n % 9000}
        for n in range(1, args.orders + 1)
    ]
    meta = sa.MetaData()
    with engine().begin() as conn:
        meta.reflect(conn, only=["customers", "orders"])
        conn.execute(meta.tables["customers"].insert(), customers)
        conn.execute(meta.tables["orders"].insert(), orders)
    return {"customers": len(customers), "orders": len(orders)}


def backup(_args: argparse.Namespace) -> str:
    meta = sa.MetaData()
    with engine().connect() as conn:
        meta.reflect(conn, only=["customers", "orders"])
        dump = {name: [dict(row._mapping) for row in conn.execute(meta.tables[name].select())] for name in ("customers", "orders")}
    target = home() / "backups" / f"orders-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(dump, default=str))
    return str(target)


def _customer_id_required(conn: sa.Connection) -> bool:
    columns = {c["name"]: c for c in sa.inspect(conn).get_columns("orders")}
    return "customer_id" in columns and not columns["customer_id"]["nullable"]


def deploy(args: argparse.Namespace) -> dict[str, Any]:
    freeze = home() / "FREEZE"
    if freeze.exists():
        raise OrdersError(f"deploys are frozen ({freeze}): {freeze.read_text().strip() or 'no reason given'}")
    if args.to == "v2":
        with engine().connect() as conn:
            if not _customer_id_required(conn):
                raise OrdersError("v2 needs orders.customer_id NOT NULL: migrate to c90b5e6f2d31 first")
    previous = _current()
    home().mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).isoformat()
    (home() / "current.json").write_text(json.dumps({"version": args.to, "deployed_at": stamp}))
    with open(home() / "deploys.log", "a") as log:
        log.write(f"{stamp} {previous or '-'} -> {args.to}\n")
    return {"version": args.to, "previous": previous}


def _current() -> str | None:
    path = home() / "current.json"
    return json.loads(path.read_text())["version"] if path.exists() else None


def status(_args: argparse.Namespace) -> dict[str, Any]:
    with engine().connect() as conn:
        try:
            revisions = sorted(row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version")))
        except sa.exc.DBAPIError:
            revisions = []
    return {"version": _current(), "alembic_current": revisions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ordersctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init").set_defaults(handler=init)
    seeding = sub.add_parser("seed")
    seeding.add_argument("--customers", type=int, default=100)
    seeding.add_argument("--orders", type=int, default=1000)
    seeding.set_defaults(handler=seed)
    sub.add_parser("backup").set_defaults(handler=backup)
    deploying = sub.add_parser("deploy")
    deploying.add_argument("--to", choices=VERSIONS, required=True)
    deploying.set_defaults(handler=deploy)
    sub.add_parser("status").set_defaults(handler=status)
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except (OrdersError, sa.exc.SQLAlchemyError) as err:
        print(f"ordersctl: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 1
    print(result if isinstance(result, str) else json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
