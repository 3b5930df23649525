"""The issued-card writer that took the database write off the response path (issue 8): no row is
lost on a normal shutdown, memory stays bounded, a failing database is retried, and the real server
writes every issued card once SIGTERM has been handled."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from cds_service.storage.db import make_engine, upgrade_async
from cds_service.storage.repo import IssuedCard, Store
from cds_service.storage.tables import IssuedCardRow
from cds_service.storage.writer import IssuedWriter
from tests.conftest import PROBE_ENV
from tests.support.client import hook_body
from tests.support.servers import run_cds_server, stop


def cards(n: int) -> list[IssuedCard]:
    now = datetime.now(UTC)
    return [
        IssuedCard(str(uuid.uuid4()), "svc", "R01", "info", "patient-view", "hook-1", "h" * 32, now)
        for _ in range(n)
    ]


async def store_at(tmp_path: Path) -> Store:
    url = f"sqlite+aiosqlite:///{tmp_path}/w.db"
    await upgrade_async(url)
    return Store(make_engine(url))


async def count(store: Store) -> int:
    async with store.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(IssuedCardRow))).scalar_one())


async def test_every_row_is_written_by_close(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    writer = IssuedWriter(store, batch_size=7)
    writer.start()
    for _ in range(60):  # many small submissions, as concurrent calls make them
        await writer.submit(cards(3))
    await writer.close()
    assert await count(store) == 180
    await store.engine.dispose()


async def test_flush_makes_rows_visible(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    writer = IssuedWriter(store)
    writer.start()
    await writer.submit(cards(4))
    await writer.flush()
    assert await count(store) == 4
    await writer.close()
    await store.engine.dispose()


async def test_full_queue_writes_inline_and_loses_nothing(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    writer = IssuedWriter(store, max_pending=5)
    writer.start()
    for _ in range(20):
        await writer.submit(cards(4))  # 4 fit, the next 4 do not: written by the caller
        assert writer.pending <= 5
    await writer.close()
    assert await count(store) == 80
    await store.engine.dispose()


async def test_not_started_or_closed_writes_inline(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    writer = IssuedWriter(store)
    await writer.submit(cards(2))  # never started
    assert await count(store) == 2
    writer.start()
    await writer.close()
    await writer.submit(cards(3))  # after close
    assert await count(store) == 5
    await store.engine.dispose()


class FlakyStore(Store):
    """A store whose first writes fail, as a database that restarts would."""

    def __init__(self, inner: Store, failures: int) -> None:
        super().__init__(inner.engine)
        self.failures = failures

    async def record_issued(self, rows: Sequence[IssuedCard]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("database restarting")
        await super().record_issued(rows)


class CountingStore(Store):
    """Records the size of every batch the writer commits."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner.engine)
        self.batches: list[int] = []

    async def record_issued(self, rows: Sequence[IssuedCard]) -> None:
        self.batches.append(len(rows))
        await super().record_issued(rows)


@pytest.mark.parametrize("linger", [0.2, 0.0])
async def test_rows_of_calls_answered_meanwhile_share_one_transaction(tmp_path: Path, linger: float) -> None:
    """Issue 15: the writer waits ``linger_seconds`` after the first queued row, so the rows of the
    calls answered meanwhile are committed together (a transaction per call cost more CPU than the
    rules); without the wait, the first call's rows go alone."""
    store = CountingStore(await store_at(tmp_path))
    writer = IssuedWriter(store, linger_seconds=linger)
    writer.start()
    await writer.submit(cards(2))
    await asyncio.sleep(0)  # the writer takes the first rows
    for _ in range(4):  # four more calls answered while it waits
        await writer.submit(cards(2))
    await asyncio.wait_for(writer.flush(), 5)
    assert await count(store) == 10
    assert store.batches == ([10] if linger else [2, 8])
    await writer.close()
    await store.engine.dispose()


async def test_failed_batches_are_retried_not_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    flaky = FlakyStore(await store_at(tmp_path), failures=3)
    writer = IssuedWriter(flaky, retry_seconds=(0.01,))
    writer.start()
    await writer.submit(cards(5))
    await asyncio.wait_for(writer.flush(), 5)
    assert await count(flaky) == 5
    assert "retrying" in caplog.text and "database restarting" not in caplog.text  # type name only
    await writer.close()
    await flaky.engine.dispose()


async def test_close_gives_up_only_on_a_dead_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = FlakyStore(await store_at(tmp_path), failures=10**9)
    writer = IssuedWriter(dead, retry_seconds=(0.01,))
    writer.start()
    await writer.submit(cards(2))
    await writer.close(timeout=0.3)
    assert "could not be written before shutdown" in caplog.text
    await dead.engine.dispose()


@pytest.mark.e2e
def test_server_writes_every_issued_card_on_sigterm(tmp_path: Path) -> None:
    """Calls answered just before SIGTERM: after a normal stop every card they issued is a row."""
    db = tmp_path / "cds.db"
    issued: list[str] = []
    with run_cds_server({**PROBE_ENV, "CDS_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}) as server:
        prefetch = {"patient": {"resourceType": "Patient", "id": "pt-w"}}

        async def burst() -> None:
            async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
                answers = await asyncio.gather(
                    *(client.post("/cds-services/probe", json=hook_body(patient="pt-w", prefetch=prefetch))
                      for _ in range(40))
                )
            for r in answers:
                assert r.status_code == 200
                issued.extend(c["uuid"] for c in r.json()["cards"])

        asyncio.run(burst())
        server.signalled = True  # stopped on purpose inside the test
        stop(server.proc)  # SIGTERM: uvicorn finishes calls, runs the lifespan shutdown, re-raises
        assert "Application shutdown complete" in server.logs()
    with sqlite3.connect(db) as conn:
        rows = {r[0] for r in conn.execute("select card_uuid from issued_cards")}
    assert rows == set(issued) and len(issued) == 40
