"""The MariaDB (or MySQL) side of ``backfill_bench.py``: the same tables, rows and contenders.

Uses ``RUNBOOK_BENCH_MARIADB_URL`` when set, else the machine's server at
``mysql://root@127.0.0.1:3306``; a database named ``backfill_bench`` is
created and dropped there, server settings are left alone (they are shared).
The plain UPDATE runs as a whole ``mariadb -e`` (or ``mysql -e``) process.
Rows come from MariaDB's sequence engine (``seq_1_to_N``); on MySQL, from a
recursive CTE.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
import sqlalchemy as sa

DATABASE = "backfill_bench"
DEFAULT_URL = "mysql://root@127.0.0.1:3306"

# The demo's rule, as the plain UPDATE: the oldest live, active subscriber of each customer.
ONE_SHOT = """
UPDATE plan_subscriptions ps
  JOIN (SELECT customer_id, id FROM
          (SELECT customer_id, id, ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY created_at, id) AS rn
             FROM subscribers WHERE deleted_at IS NULL AND status = 'active') ranked
         WHERE rn = 1) r ON r.customer_id = ps.customer_id
   SET ps.subscriber_id = r.id
 WHERE ps.subscriber_id IS NULL
"""


def checks() -> dict[str, str]:
    """Rows whose result differs from what the plain UPDATE leaves, per table."""
    cheap = "SELECT count(*) FROM {t} WHERE NOT (y <=> x * 2)"
    return {
        "cheap": cheap.format(t="cheap"),
        "uuids": cheap.format(t="uuids"),
        "plan_subscriptions": "SELECT (SELECT count(*) FROM plan_subscriptions p JOIN expected e USING (id)"
        " WHERE NOT (p.subscriber_id <=> e.subscriber_id))"
        " + ABS((SELECT count(*) FROM plan_subscriptions) - (SELECT count(*) FROM expected))",
    }


@contextmanager
def bench_database() -> Iterator[str]:
    from runbook.connections import normalize_url

    base = normalize_url(os.environ.get("RUNBOOK_BENCH_MARIADB_URL", DEFAULT_URL))
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    try:
        yield sa.engine.make_url(base).set(database=DATABASE).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.dispose()


def _series(conn: sa.Connection, rows: int) -> str:
    """A table expression of the integers 1..rows as column ``g``."""
    try:
        conn.exec_driver_sql("SELECT 1 FROM seq_1_to_1 LIMIT 1").all()
        return f"(SELECT seq AS g FROM seq_1_to_{rows})"
    except sa.exc.DBAPIError:
        conn.rollback()
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS series (g INT PRIMARY KEY)")
        conn.exec_driver_sql(
            f"INSERT INTO series WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) SELECT g FROM s"
        )
        return f"(SELECT g FROM series WHERE g <= {rows})"


def _uuid_of(expr: str) -> str:
    """A UUID string (the demo's time-ordered layout) from the integer ``expr``."""
    raw = f"CONCAT(LPAD(HEX({expr}), 12, '0'), '7', SUBSTR(MD5({expr}), 1, 19))"
    return f"CONCAT_WS('-', SUBSTR({raw}, 1, 8), SUBSTR({raw}, 9, 4), SUBSTR({raw}, 13, 4), SUBSTR({raw}, 17, 4), SUBSTR({raw}, 21, 12))"


def _random_uuid(expr: str) -> str:
    raw = f"MD5(CONCAT(RAND(), {expr}))"
    return f"CONCAT_WS('-', SUBSTR({raw}, 1, 8), SUBSTR({raw}, 9, 4), SUBSTR({raw}, 13, 4), SUBSTR({raw}, 17, 4), SUBSTR({raw}, 21, 12))"


def generate(engine: sa.Engine, rows: int) -> None:
    """As the PostgreSQL side: cheap and uuids (x, y NULL); plan_subscriptions over rows/2 customers."""
    customers = max(1, rows // 2)
    with engine.begin() as conn:
        series = _series(conn, max(rows, customers))
        for statement in (
            "CREATE TABLE cheap_seed (id BIGINT PRIMARY KEY, x INT NOT NULL, y INT)",
            f"INSERT INTO cheap_seed SELECT g, MOD(g, 100000), NULL FROM {series} s WHERE g <= {rows}",
            # Random UUIDs as text (MariaDB's own UUID() is time-based, hence ordered).
            "CREATE TABLE uuids_seed (id CHAR(36) CHARACTER SET ascii PRIMARY KEY, x INT NOT NULL, y INT)",
            f"INSERT INTO uuids_seed SELECT {_random_uuid('g')}, MOD(g, 100000), NULL FROM {series} s WHERE g <= {rows}",
            "CREATE TABLE customers (id VARCHAR(36) PRIMARY KEY, name VARCHAR(200) NOT NULL)",
            "CREATE TABLE subscribers (id VARCHAR(36) PRIMARY KEY, customer_id VARCHAR(36) NOT NULL,"
            " status VARCHAR(20) NOT NULL, created_at DATETIME NOT NULL, deleted_at DATETIME,"
            " CONSTRAINT fk_subscribers_customer FOREIGN KEY (customer_id) REFERENCES customers (id))",
            "CREATE TABLE plan_subscriptions_seed (id VARCHAR(36) PRIMARY KEY, customer_id VARCHAR(36) NOT NULL,"
            " plan_id VARCHAR(36) NOT NULL, status VARCHAR(20) NOT NULL, start_date DATETIME NOT NULL,"
            " created_at DATETIME NOT NULL, subscriber_id VARCHAR(36))",
            f"INSERT INTO customers SELECT CONCAT('c', g - 1), CONCAT('customer ', g - 1) FROM {series} s WHERE g <= {customers}",
            # Suffix a: the oldest live one (none for g % 20 = 18); b: a second live one
            # (ambiguous); z: an even older one, soft-deleted, which must be ignored.
            "INSERT INTO subscribers SELECT CONCAT('s', c.g, v.suffix), CONCAT('c', c.g), 'active', NOW() - INTERVAL v.age DAY,"
            " CASE WHEN v.suffix = 'z' THEN NOW() END"
            f" FROM (SELECT g - 1 AS g FROM {series} s WHERE g <= {customers}) c,"
            " (SELECT 'a' AS suffix, 400 AS age UNION ALL SELECT 'b', 300 UNION ALL SELECT 'z', 900) v"
            " WHERE (v.suffix = 'a' AND MOD(c.g, 20) <> 18) OR (v.suffix = 'b' AND MOD(c.g, 20) IN (16, 17))"
            " OR (v.suffix = 'z' AND MOD(c.g, 20) = 19)",
            "CREATE INDEX ix_subscribers_customer_id ON subscribers (customer_id)",
            f"INSERT INTO plan_subscriptions_seed SELECT {_uuid_of('g')}, CONCAT('c', MOD(g, {customers})),"
            " CONCAT('plan-', MOD(g, 7)), 'active', NOW() - INTERVAL 30 DAY, NOW() - INTERVAL 30 DAY, NULL"
            f" FROM {series} s WHERE g <= {rows}",
            "ANALYZE TABLE customers, subscribers",
        ):
            conn.exec_driver_sql(statement)


def reset(engine: sa.Engine, table: str) -> None:
    """A fresh ``table`` from its seed: same rows, indexes and FK, analyzed."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        conn.exec_driver_sql(f"CREATE TABLE {table} LIKE {table}_seed")
        conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM {table}_seed")
        if table == "plan_subscriptions":
            conn.exec_driver_sql("CREATE INDEX ix_plan_subscriptions_customer_id ON plan_subscriptions (customer_id)")
            conn.exec_driver_sql("CREATE INDEX ix_plan_subscriptions_subscriber_id ON plan_subscriptions (subscriber_id)")
            conn.exec_driver_sql(
                "ALTER TABLE plan_subscriptions ADD CONSTRAINT fk_plan_subscriptions_subscriber_id"
                " FOREIGN KEY (subscriber_id) REFERENCES subscribers (id)"
            )
        conn.exec_driver_sql(f"ANALYZE TABLE {table}").all()


def plain_update(engine: sa.Engine, url: str, sql: str, table: str) -> float:
    """One plain UPDATE, as a whole ``mariadb -e`` process when the client is installed."""
    reset(engine, table)
    client = shutil.which("mariadb") or shutil.which("mysql")
    started = time.perf_counter()
    if client:
        u = sa.engine.make_url(url)
        args = [client, "-h", u.host or "127.0.0.1", "-P", str(u.port or 3306), "-u", u.username or "root"]
        env = {**os.environ, **({"MYSQL_PWD": u.password} if u.password else {})}
        subprocess.run([*args, u.database or DATABASE, "-e", sql], check=True, capture_output=True, env=env)
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    elapsed = time.perf_counter() - started
    if table == "plan_subscriptions":
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS expected")
            conn.exec_driver_sql("CREATE TABLE expected (id VARCHAR(36) PRIMARY KEY, subscriber_id VARCHAR(36))")
            conn.exec_driver_sql("INSERT INTO expected SELECT id, subscriber_id FROM plan_subscriptions")
    return elapsed


def describe(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        version, pool = conn.exec_driver_sql("SELECT VERSION(), @@innodb_buffer_pool_size").one()
    return f"{version}, innodb_buffer_pool_size {int(pool) // 2**20} MB"

