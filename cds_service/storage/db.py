"""Engine and migrations. SQLite file by default, Postgres via ``CDS_DATABASE_URL``."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


DEFAULT_STATEMENT_TIMEOUT = 3.0  # seconds; CDS_DATABASE_TIMEOUT_SECONDS
DEFAULT_CONNECT_TIMEOUT = 2.0  # seconds; CDS_DATABASE_CONNECT_TIMEOUT_SECONDS


def make_engine(
    url: str,
    statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> AsyncEngine:
    """An async engine; SQLite gets WAL so readers do not block the feedback writer.

    ``hide_parameters``: a failed statement's error text (and so any traceback that reaches a
    log) must never carry its parameters, which include the clinician's free-text override comment
    (issue 16). Postgres gets timeouts at every level, so a frozen or unreachable database makes a
    call fail within seconds (503) instead of hanging: connect (``timeout``), waiting for a pooled
    connection (``pool_timeout``), each statement on the client (``command_timeout``, which also
    covers a server that stopped answering altogether) and on the server (``statement_timeout``,
    ``lock_timeout``, so a statement stuck behind a lock is cancelled and its locks freed).
    ``statement_timeout=None`` is for the migration lock, which must be able to wait.
    """
    if url.startswith("sqlite"):
        busy = statement_timeout if statement_timeout is not None else 30
        engine = create_async_engine(url, connect_args={"timeout": busy}, hide_parameters=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            cur.close()

        return engine
    connect_args: dict[str, Any] = {"timeout": connect_timeout}
    if statement_timeout is not None:
        ms = str(int(statement_timeout * 1000))
        connect_args["command_timeout"] = statement_timeout
        connect_args["server_settings"] = {"statement_timeout": ms, "lock_timeout": ms}
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        pool_timeout=connect_timeout,
        hide_parameters=True,
        connect_args=connect_args,
    )


def alembic_config(url: str) -> Config:
    """Alembic's configuration for ``url``. Alembic is imported here, not at module level: a
    worker that does not migrate at start (the production setting) never loads it (~10 MB of
    resident memory per worker, issue 15)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations (blocking; run from a thread or the CLI)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def migration_heads() -> frozenset[str]:
    """The head revision(s) of the migrations shipped with this code, read from the revision files
    (their ``revision`` and ``down_revision`` assignments) without importing Alembic; the readiness
    check needs only these ids. tests/unit/test_migrations.py holds it to Alembic's own answer."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                continue
            name, value = node.targets[0].id, ast.literal_eval(node.value)
            if name == "revision":
                revisions.add(str(value))
            elif name == "down_revision" and value is not None:
                parents.update([value] if isinstance(value, str) else value)
    return frozenset(revisions - parents)


async def upgrade_async(url: str) -> None:
    """Migrations from inside a running event loop (Alembic's env.py starts its own loop)."""
    await asyncio.to_thread(upgrade, url)
