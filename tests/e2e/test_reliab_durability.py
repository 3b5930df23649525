"""Issue 16, point 6: issued-card rows survive ``kill -9`` right after the answers.

The real service answers calls while the ``issued_cards`` table is locked by another session (so
the batch writer cannot commit), is killed with SIGKILL the moment the last answer arrives, and is
started again: every card it answered must be in the table (replayed from its local journal).
A second run without the lock measures the loss window with and without the journal."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import PROBE_ENV
from tests.support.client import hook_body
from tests.support.servers import CdsServer, run_cds_server

SVC = "/cds-services/probe"


def _pg(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def count_rows(url: str) -> int:
    conn = await asyncpg.connect(_pg(url), timeout=10)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM issued_cards"))
    finally:
        await conn.close()


async def answer_calls(server: CdsServer, n: int, concurrency: int = 16) -> list[str]:
    """``n`` calls; the card uuids of the answers."""
    body: Any = hook_body(patient="pt-1", prefetch={"patient": {"resourceType": "Patient", "id": "pt-1"}})
    uuids: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient) -> None:
        async with sem:
            r = await client.post(server.url(SVC), json=body, timeout=30)
            assert r.status_code == 200, r.text
            uuids.extend(c["uuid"] for c in r.json()["cards"])

    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(one(client) for _ in range(n)))
    return uuids


def kill_after_answers(server: CdsServer, n: int) -> int:
    """Answer ``n`` calls, SIGKILL the process at once; the number of cards answered."""
    uuids = asyncio.run(answer_calls(server, n))
    server.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    return len(uuids)


def env_for(url: str, journal: Path | None) -> dict[str, str]:
    env = {**PROBE_ENV, "CDS_DATABASE_URL": url, "CDS_AUTO_MIGRATE": "true"}
    if journal is None:
        env["CDS_ISSUED_JOURNAL"] = "false"
    else:
        env["CDS_ISSUED_JOURNAL_DIR"] = str(journal)
    return env


def rows_after_restart(url: str, env: dict[str, str], expected: int, wait: float = 30) -> int:
    with run_cds_server(env):
        deadline = time.monotonic() + wait
        while (rows := asyncio.run(count_rows(url))) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
    return rows


def test_no_issued_card_is_lost_to_kill_9_while_the_database_lags(postgres_url: str) -> None:
    journal = Path(tempfile.mkdtemp(prefix="cds-journal-"))
    env = env_for(postgres_url, journal)
    with run_cds_server(env) as server:

        async def locked_run() -> int:
            conn = await asyncpg.connect(_pg(postgres_url), timeout=10)
            try:
                tx = conn.transaction()
                await tx.start()
                await conn.execute("LOCK TABLE issued_cards IN ACCESS EXCLUSIVE MODE")
                answered = await asyncio.to_thread(kill_after_answers, server, 200)
                await tx.rollback()
                return answered
            finally:
                await conn.close()

        answered = asyncio.run(locked_run())
    assert asyncio.run(count_rows(postgres_url)) == 0  # nothing was committed before the kill
    assert rows_after_restart(postgres_url, env, answered) == answered
    assert list(journal.glob("issued-*.jsonl")) == [] or all(
        p.stat().st_size == 0 for p in journal.glob("*.jsonl")
    )


def test_loss_window_with_and_without_the_journal(postgres_url: str) -> None:
    """The figure for docs/deployment.md: kill -9 the moment 450 answers are in."""
    figures = {}
    for label, journal in (
        ("without journal", None),
        ("with journal", Path(tempfile.mkdtemp(prefix="cds-j-"))),
    ):
        env = env_for(postgres_url, journal)
        with run_cds_server(env) as server:
            before = asyncio.run(count_rows(postgres_url))
            answered = kill_after_answers(server, 450)
        in_db_at_kill = asyncio.run(count_rows(postgres_url)) - before
        wait = 30 if journal is not None else 3  # without a journal nothing more can come
        after = rows_after_restart(postgres_url, env, before + answered, wait) - before
        figures[label] = (answered, answered - in_db_at_kill, answered - after)
    for label, (answered, at_kill, lost) in figures.items():
        print(f"{label}: {answered} answered, {at_kill} not yet committed at the kill, {lost} lost for good")
    assert figures["with journal"][2] == 0
