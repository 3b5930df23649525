"""Issued-card rows are written beside the response path, not on it.

Recording which cards were issued (for the feedback analytics) used to be awaited before every
answer: one database transaction per call, and with concurrent calls on SQLite, writers queueing on
the database lock, which put seconds into the tail latency (docs/performance.md). The EHR does not
need the row to exist before it sees the cards, so calls hand their rows to one writer task per
process, which commits them in batches.

Guarantees:

* Bounded memory: at most ``max_pending`` rows wait. A call that finds the queue full writes its own
  rows inline, exactly as before, so a slow or failing database still slows or fails calls instead
  of growing the queue.
* No row is lost on a normal shutdown: ``close()`` (called from the app's lifespan after uvicorn has
  let in-flight calls finish) writes everything still queued. A failed batch is retried with
  backoff, never dropped while the process runs.
* ``flush()`` waits until everything handed over so far is committed (the analytics endpoint calls
  it, so a report in the same process always includes the calls it has answered).
* Crash safety (issue 16): with a journal (storage/journal.py, on by default) every queued row is
  appended to a local file before ``submit`` returns, i.e. before the answer is sent, and rows
  journalled by a process that died are replayed when the writer starts. Without one, the rows
  queued at the moment of a ``kill -9`` are lost (docs/deployment.md gives the measured window).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from cds_service.storage.journal import IssuedJournal, default_directory
from cds_service.storage.repo import IssuedCard, Store

log = logging.getLogger("cds.storage")


class IssuedWriter:
    """One background task that commits issued-card rows in batches."""

    def __init__(
        self,
        store: Store,
        max_pending: int = 10_000,
        batch_size: int = 500,
        retry_seconds: tuple[float, ...] = (0.05, 0.2, 1.0, 2.0),
        journal: IssuedJournal | None = None,
        linger_seconds: float = 0.05,
    ) -> None:
        self.store = store
        # How long the writer waits after the first queued row before committing, so the rows of
        # the calls answered meanwhile share one transaction: a transaction per call was the
        # largest single cost of a small call (docs/performance.md). Rows are journalled, so the
        # wait adds nothing to what a crash can lose; flush() and close() wait at most this long more.
        self.linger_seconds = linger_seconds
        self.journal = journal
        self.batch_size = batch_size
        self.retry_seconds = retry_seconds
        self._queue: asyncio.Queue[IssuedCard] = asyncio.Queue(maxsize=max_pending)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._unfinished_batch = 0

    def start(self) -> None:
        """Start the writer task on the running loop (from the app's lifespan)."""
        if self._task is None:
            if self.journal is not None:
                try:
                    self.journal.open()
                except OSError as exc:
                    log.error(
                        "issued-card journal unusable; rows are not crash-safe until the next start",
                        extra={
                            "fields": {"error": type(exc).__name__, "directory": str(self.journal.directory)}
                        },
                    )
                    self.journal = None
            self._task = asyncio.create_task(self._run(), name="issued-card-writer")

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def submit(self, cards: Sequence[IssuedCard]) -> None:
        """Hand rows to the writer without waiting for the database; when the queue is full (or
        the writer is not running), write them inline instead."""
        if not cards:
            return
        if self._task is None or self._closing or self._queue.maxsize - self._queue.qsize() < len(cards):
            await self.store.record_issued(cards)
            return
        if self.journal is not None:
            try:
                self.journal.append(cards)
            except OSError as exc:
                log.error(
                    "issued-card journal write failed; writing inline",
                    extra={"fields": {"error": type(exc).__name__}},
                )
                await self.store.record_issued(cards)
                return
        for card in cards:
            self._queue.put_nowait(card)

    async def flush(self) -> None:
        """Return when every row submitted before this call is committed."""
        if self._task is not None:
            await self._queue.join()

    async def close(self, timeout: float = 10.0) -> None:
        """Write everything still queued, then stop the task (normal shutdown). Only a database
        that stays unreachable for ``timeout`` seconds makes it give up, saying how many rows."""
        if self._task is None:
            return
        self._closing = True
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.error(
                "issued-card rows could not be written before shutdown",
                extra={"fields": {"rows": self._queue.qsize() + self._unfinished_batch}},
            )
        committed = self._queue.empty() and self._unfinished_batch == 0
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self.journal is not None:
            await self.journal.close(committed)

    async def _replay(self) -> None:
        """Rows journalled by processes that died, into the database (retried until it works)."""
        assert self.journal is not None
        journal = self.journal
        await self._until_done(
            lambda: journal.replay_orphans(self.store.record_issued),
            "journalled issued-card rows not replayed yet; retrying",
            {},
        )

    async def _until_done(
        self, action: Callable[[], Awaitable[object]], message: str, fields: dict[str, object]
    ) -> None:
        """Run ``action`` until it succeeds, logging each failure (its type only) and waiting the
        next ``retry_seconds`` step before trying again: rows are never dropped while we run."""
        attempt = 0
        while True:
            try:
                await action()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.retry_seconds[min(attempt, len(self.retry_seconds) - 1)]
                log.error(message, extra={"fields": {**fields, "error": type(exc).__name__, "retry_s": delay}})
                attempt += 1
                await asyncio.sleep(delay)

    async def _run(self) -> None:
        if self.journal is not None:
            await self._replay()
        while True:
            batch = [await self._queue.get()]
            if self.linger_seconds > 0 and not self._closing and self._queue.qsize() < self.batch_size:
                await asyncio.sleep(self.linger_seconds)
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._unfinished_batch = len(batch)
            await self._write(batch)
            self._unfinished_batch = 0
            if self.journal is not None and self._queue.empty():
                # Nothing queued and nothing in flight: every journalled row is committed.
                self.journal.truncate()
            for _ in batch:
                self._queue.task_done()

    async def _write(self, batch: list[IssuedCard]) -> None:
        """Commit one batch, retrying with backoff until it is in (rows are never dropped)."""
        await self._until_done(
            lambda: self.store.record_issued(batch), "issued-card rows not written yet; retrying", {"rows": len(batch)}
        )


def issued_journal(enabled: bool, directory: Path | None, db_url: str) -> IssuedJournal | None:
    """The journal the settings ask for (None when ``CDS_ISSUED_JOURNAL=false``); the directory
    defaults to one beside the database. Plain values, not ``Settings``: storage sits below settings."""
    if not enabled:
        return None
    return IssuedJournal(directory or default_directory(db_url))
