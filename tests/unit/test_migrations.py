"""Alembic migrations go up and down cleanly on SQLite and on the local Postgres."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import inspect

from cds_service.storage.db import downgrade, make_engine, upgrade
from cds_service.storage.tables import Base


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            return names - {"alembic_version"}
    finally:
        await engine.dispose()


def _round_trip(url: str) -> None:
    upgrade(url)
    assert asyncio.run(_tables(url)) == set(Base.metadata.tables)
    downgrade(url, "base")
    assert asyncio.run(_tables(url)) == set()
    upgrade(url)
    assert asyncio.run(_tables(url)) == set(Base.metadata.tables)


def test_sqlite_up_down(tmp_path: Path) -> None:
    _round_trip(f"sqlite+aiosqlite:///{tmp_path}/m.db")


@pytest.mark.postgres
def test_postgres_up_down(postgres_url: str) -> None:
    _round_trip(postgres_url)


def test_heads_read_without_alembic_are_alembics_heads() -> None:
    """The readiness check reads the head revision(s) from the revision files without importing
    Alembic (issue 15: ~10 MB per worker); they must be exactly what Alembic computes."""
    from alembic.script import ScriptDirectory

    from cds_service.storage.db import alembic_config, migration_heads

    assert migration_heads() == frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())
    assert len(migration_heads()) == 1


def test_a_worker_that_does_not_migrate_never_imports_alembic_or_redis() -> None:
    """Importing and building the app (as a worker does when migrations ran before it, and with no
    Redis configured) loads neither Alembic nor the Redis client."""
    import subprocess
    import sys

    code = (
        "import sys; from cds_service.http.app import create_app; create_app(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'redis')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "CDS_LOG_LEVEL": "WARNING"}, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
