"""Reading the service's database from a test, as an operator would: a query on a fresh engine."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from cds_service.storage.db import make_engine


async def query_rows(url: str, sql: str) -> list[Any]:
    """The rows of ``sql`` on the database at ``url`` (the engine is disposed afterwards)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()
