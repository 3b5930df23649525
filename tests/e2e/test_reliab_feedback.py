"""Issue 16, points 1-3: feedback against a real Postgres that refuses, chokes or freezes.

1. PHI never reaches a log line or a stored row when the database rejects a feedback insert.
2. Bodies that used to get a 500 on every retry (too many items for one statement, values longer
   than their columns, NUL characters) are stored in chunks or refused with a 400 naming the field.
3. A frozen database answers 503 + Retry-After within the statement timeout, readiness goes red,
   and the service recovers when the database does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import PROBE_ENV
from tests.support.client import checked
from tests.support.private_servers import private_postgres
from tests.support.servers import CdsServer, run_cds_server

FEEDBACK = "/cds-services/probe/feedback"
# What a clinician might type into an override comment: a name, a birth date, a record number.
PHI = ("Jonathan Quixote-Smith", "1957-03-14", "MRN-99417-PHI")


def _asyncpg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


def sql(url: str, statement: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(_asyncpg_url(url), timeout=10)
        try:
            if ";" in statement:  # several commands: no rows wanted
                await conn.execute(statement)
                return []
            return list(await conn.fetch(statement))
        finally:
            await conn.close()

    return asyncio.run(run())


def item(card: str = "card-1", comment: str | None = None, **reason: str) -> dict[str, Any]:
    out: dict[str, Any] = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-01-02T03:04:05Z"}
    if comment is not None or reason:
        out["overrideReason"] = {"userComment": comment} if comment is not None else {}
        if reason:
            out["overrideReason"]["reason"] = {"system": "http://example.org/r", "code": "c", **reason}
    return out


def post(server: CdsServer, items: list[dict[str, Any]], timeout: float = 60) -> httpx.Response:
    return httpx.post(server.url(FEEDBACK), json={"feedback": items}, timeout=timeout)


def every_stored_row(url: str) -> str:
    """Every row of every table of the service's schema, as text."""
    tables = [r[0] for r in sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert {"feedback", "issued_cards", "audit_events"} <= set(tables)
    return "\n".join(str(r[0]) for t in tables for r in sql(url, f'SELECT t::text FROM "{t}" t'))  # noqa: S608 - table names from pg_tables


@pytest.fixture
def pg_server(postgres_url: str) -> Iterator[tuple[CdsServer, str]]:
    env = {
        **PROBE_ENV,
        "CDS_DATABASE_URL": postgres_url,
        "CDS_AUTO_MIGRATE": "true",
        "CDS_AUDIT_TO_DATABASE": "true",
        "CDS_LOG_LEVEL": "debug",
    }
    with run_cds_server(env) as server:
        yield server, postgres_url


# ------------------------------------------------------------------------------- 1. PHI in logs


@pytest.mark.parametrize("refusal", ["check", "trigger"])
def test_rejected_insert_leaks_no_phi(pg_server: tuple[CdsServer, str], refusal: str) -> None:
    server, url = pg_server
    if refusal == "check":  # Postgres quotes the failing row in the error's DETAIL
        sql(url, "ALTER TABLE feedback ADD CONSTRAINT no_comments CHECK (user_comment IS NULL) NOT VALID")
    else:
        sql(
            url,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'feedback refused by a test trigger'; END$$; "
            "CREATE TRIGGER refuse BEFORE INSERT ON feedback FOR EACH ROW EXECUTE FUNCTION refuse()",
        )
    comment = f"Patient {PHI[0]}, born {PHI[1]}, record {PHI[2]}: I know him, not relevant"
    answers = [post(server, [item(f"card-{i}", comment, display=f"{PHI[0]} asked")]) for i in range(3)]
    time.sleep(0.5)  # audit records follow the response
    logs = server.logs()
    rows = every_stored_row(url)
    for value in PHI:  # first what the issue is about: nowhere in a log line or a stored row
        assert value not in logs, f"{value!r} in the service log"
        assert value not in rows, f"{value!r} in a stored row"
        assert all(value not in r.text for r in answers)
    assert "storing feedback failed" in logs
    for r in answers:
        assert r.status_code == 500, r.text  # refused for good: a retry cannot succeed
        assert "not done" in checked(r)["issue"][0]["diagnostics"]


# ------------------------------------------------------------------- 2. feedback lost for good


@pytest.mark.parametrize("count", [1000, 1001, 2978, 2979, 4500])
def test_many_items_are_stored_in_chunks(pg_server: tuple[CdsServer, str], count: int) -> None:
    """asyncpg takes at most 32,767 parameters per statement: 2,978 rows of 11 columns."""
    server, url = pg_server
    items = [item(f"card-{i}") for i in range(count)]
    r = post(server, items)
    assert r.status_code == 200, r.text
    assert sql(url, "SELECT count(*) FROM feedback")[0][0] == count
    assert post(server, items).status_code == 200  # a retry is a no-op, not a duplicate
    assert sql(url, "SELECT count(*) FROM feedback")[0][0] == count


@pytest.mark.parametrize(
    ("field", "limit", "make"),
    [
        ("feedback.0.card", 200, lambda v: item(card=v)),
        ("feedback.0.overrideReason.reason.code", 200, lambda v: item(code=v)),
        ("feedback.0.overrideReason.reason.display", 500, lambda v: item(display=v)),
        ("feedback.0.overrideReason.reason.system", 500, lambda v: item(system=v)),
        (
            "feedback.0.acceptedSuggestions.0.id",
            200,
            lambda v: {**item(), "outcome": "accepted", "acceptedSuggestions": [{"id": v}]},
        ),
    ],
    ids=["card", "code", "display", "system", "suggestion-id"],
)
def test_lengths_at_the_exact_edge(
    pg_server: tuple[CdsServer, str], field: str, limit: int, make: Any
) -> None:
    server, url = pg_server
    assert post(server, [make("x" * limit)]).status_code == 200
    for _ in range(2):  # the same answer on a retry
        r = post(server, [make("y" * (limit + 1))])
        assert r.status_code == 400, r.text
        assert field in checked(r)["issue"][0]["diagnostics"]
    assert sql(url, "SELECT count(*) FROM feedback")[0][0] == 1


@pytest.mark.parametrize(
    ("field", "make"),
    [
        ("feedback.0.overrideReason.userComment", lambda: item(comment="before\x00after")),
        ("feedback.0.card", lambda: item(card="card\x00")),
        ("feedback.0.overrideReason.reason.code", lambda: item(code="c\x00")),
    ],
    ids=["comment", "card", "code"],
)
def test_nul_characters_are_a_400(pg_server: tuple[CdsServer, str], field: str, make: Any) -> None:
    server, _ = pg_server
    r = post(server, [make()])
    assert r.status_code == 400, r.text
    diagnostics = checked(r)["issue"][0]["diagnostics"]
    assert field in diagnostics and "NUL" in diagnostics
    assert post(server, [item(comment="before after")]).status_code == 200


# ----------------------------------------------------------------------- 3. database timeouts


def test_locked_table_answers_503_with_retry_after(pg_server: tuple[CdsServer, str]) -> None:
    """A statement stuck behind another session's lock is cancelled by the server-side timeouts."""
    server, url = pg_server

    async def hold_lock_and_post() -> tuple[httpx.Response, float]:
        conn = await asyncpg.connect(_asyncpg_url(url), timeout=10)
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("LOCK TABLE feedback IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            async with httpx.AsyncClient(timeout=60) as client:
                r = await client.post(server.url(FEEDBACK), json={"feedback": [item()]})
            elapsed = time.monotonic() - started
            await tx.rollback()
            return r, elapsed
        finally:
            await conn.close()

    r, elapsed = asyncio.run(hold_lock_and_post())
    print(f"locked table: HTTP {r.status_code} after {elapsed:.2f} s")
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"].isdigit()
    checked(r)
    assert post(server, [item()]).status_code == 200  # the lock is gone: the retry is stored


def test_frozen_database_answers_503_and_readiness_goes_red() -> None:
    """SIGSTOP every process of a private Postgres: connections stay open but nothing answers."""
    with private_postgres() as pg:
        env = {
            **PROBE_ENV,
            "CDS_DATABASE_URL": pg.url,
            "CDS_AUTO_MIGRATE": "true",
            "CDS_DATABASE_TIMEOUT_SECONDS": "2",
            "CDS_DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
        }
        with run_cds_server(env) as server:
            assert post(server, [item("warm")]).status_code == 200
            assert httpx.get(server.url("/readyz"), timeout=30).status_code == 200
            pg.freeze()
            try:
                figures = []
                for i in range(3):  # pooled connection, then fresh connections
                    started = time.monotonic()
                    r = post(server, [item(f"frozen-{i}")])
                    figures.append(time.monotonic() - started)
                    assert r.status_code == 503, r.text
                    assert r.headers["retry-after"].isdigit()
                    checked(r)
                started = time.monotonic()
                ready = httpx.get(server.url("/readyz"), timeout=30)
                figures.append(time.monotonic() - started)
                assert ready.status_code == 503 and ready.json()["database"] == "down"
                print("frozen database: 503 after " + ", ".join(f"{f:.2f} s" for f in figures))
            finally:
                pg.thaw()
            deadline = time.monotonic() + 30
            while post(server, [item("after")]).status_code != 200:
                assert time.monotonic() < deadline, "feedback never recovered after the thaw"
                time.sleep(0.5)
            assert httpx.get(server.url("/readyz"), timeout=30).status_code == 200
