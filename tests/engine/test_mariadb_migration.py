"""A migration that stops halfway on MariaDB, through the real CLI, then --resume.

MariaDB (and MySQL) commit each DDL statement as it runs. A migration whose
second statement fails, or whose process is killed after its first, leaves
the first applied while ``alembic_version`` names the revision before. The
run says so; --resume runs the migration again, takes the statement that
stayed as done, and completes. ``mariadb_url`` is a fresh database; without a
server these tests are skipped.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import sqlalchemy as sa

from runbook.connections import normalize_url
from tests.engine.conftest import Project

R1, R2 = "1a1a1a1a1a1a", "2b2b2b2b2b2b"

ENV_PY = '''
import sqlalchemy as sa
from alembic import context

engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
'''

FIRST = '''"""customers"""
from alembic import op
import sqlalchemy as sa

revision = "1a1a1a1a1a1a"
down_revision = None


def upgrade():
    op.create_table("customers", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("customers")
'''

# Two DDL statements; between them, while ``pause`` exists, a wait the test kills the process in.
SECOND = '''"""widgets"""
import os
from alembic import op
import sqlalchemy as sa

revision = "2b2b2b2b2b2b"
down_revision = "1a1a1a1a1a1a"


def upgrade():
    op.create_table("widgets", sa.Column("id", sa.Integer, primary_key=True))
    if os.path.exists({pause!r}):
        op.execute("SELECT SLEEP(120)")
    op.add_column("{table}", sa.Column("size", sa.Integer))


def downgrade():
    op.drop_table("widgets")
'''

RUNBOOK = """
name: widgets
connections:
  app: "{url}"
steps:
  - id: migrate
    kind: alembic
    config: alembic.ini
    connection: app
    command: upgrade
    target: head
    irreversible: true
  - id: check
    kind: sql
    connection: app
    sql: SELECT COUNT(*) FROM widgets
    irreversible: true
    gates:
      - check: column_exists
        connection: app
        table: widgets
        column: size
        type: integer
"""


def make_project(project: Project, url: str, *, table: str) -> None:
    project.write("widgets.yaml", RUNBOOK.format(url=url))
    migrations = project.root / "runbooks" / "migrations"
    (migrations / "versions").mkdir(parents=True, exist_ok=True)
    (project.root / "runbooks" / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    (migrations / "env.py").write_text(ENV_PY)
    (migrations / "versions" / f"{R1}_customers.py").write_text(FIRST)
    pause = str(project.root / "pause")
    (migrations / "versions" / f"{R2}_widgets.py").write_text(SECOND.format(pause=pause, table=table))


def query(url: str, sql: str) -> list[object]:
    engine = sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(sql)
            return list(result.scalars()) if result.returns_rows else []
    finally:
        engine.dispose()


def left_behind(url: str) -> tuple[list[object], list[object]]:
    """The tables and the revision a stopped migration left."""
    return query(url, "SHOW TABLES"), query(url, "SELECT version_num FROM alembic_version")


def test_a_failure_halfway_says_what_stayed_and_resume_completes(sqlite_project: Project, mariadb_url: str) -> None:
    project = sqlite_project
    make_project(project, mariadb_url, table="no_such_table")
    failed = project.runbook("run", "runbooks/widgets.yaml", "--yes")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    line = next(line for line in failed.stdout.splitlines() if line.startswith("✘ [migrate] failed"))
    assert f"failed in upgrade {R1} -> {R2} (widgets) (last applied: {R1}; " in line
    assert "kept 1 statement of it: CREATE TABLE widgets (" in line and "1146 Table" in line
    assert left_behind(mariadb_url) == (["alembic_version", "customers", "widgets"], [R1])

    make_project(project, mariadb_url, table="widgets")  # the fix
    resumed = project.runbook("run", "runbooks/widgets.yaml", "--resume", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "already applied by an earlier attempt (table already exists), taken as done: CREATE TABLE widgets (" in resumed.stdout
    assert left_behind(mariadb_url) == (["alembic_version", "customers", "widgets"], [R2])


def test_sigkill_halfway_through_a_migration_then_resume(sqlite_project: Project, mariadb_url: str) -> None:
    """The process dies between the migration's two DDL statements: the first stayed, --resume completes the migration."""
    project = sqlite_project
    make_project(project, mariadb_url, table="widgets")
    (project.root / "pause").touch()
    proc = project.spawn("run", "runbooks/widgets.yaml", "--yes")
    try:
        sleeping = "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(120)' AND DB = DATABASE()"
        deadline = time.monotonic() + 60
        while not (session := query(mariadb_url, sleeping)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # What the dead process left: the first statement's table, the revision before.
    assert left_behind(mariadb_url) == (["alembic_version", "customers", "widgets"], [R1])
    query(mariadb_url, f"KILL {session[0]}")  # its server session outlives it, asleep

    (project.root / "pause").unlink()
    resumed = project.runbook("run", "runbooks/widgets.yaml", "--resume", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "interrupted" in resumed.stdout
    assert "already applied by an earlier attempt (table already exists), taken as done: CREATE TABLE widgets (" in resumed.stdout
    assert left_behind(mariadb_url) == (["alembic_version", "customers", "widgets"], [R2])
