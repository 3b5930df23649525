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
