"""A local append-only journal that makes issued-card rows survive a crash of the process.

The issued-card writer (storage/writer.py) commits rows in batches after the answer has gone out,
which took the database off the response path. The price was a window: rows handed over but not
yet committed were lost when the process died (an outside probe lost 438 of 450 with ``kill -9``
right after the answers; issue 16), and feedback then referred to cards we had no record of.

Every call now appends its rows to this journal *before* the answer is sent: one ``write(2)`` of a
few hundred bytes to a file opened with ``O_APPEND``, no fsync on the response path. Once
``write`` returns the bytes are in the kernel's page cache, which a dying process cannot take with
it, so ``kill -9``, an OOM kill or a crash of the interpreter lose nothing. A background task
fsyncs the file every ``fsync_seconds`` (group commit), which bounds what a crash of the whole
machine can lose to that interval. When the writer has committed everything appended so far, the
file is truncated, so it holds only rows not yet in the database.

Each process owns one file, locked with ``flock`` while the process lives. At start-up, a process
replays every file in the directory whose lock it can take (its owner is dead) into the database,
then deletes it. Inserts are idempotent (the card uuid is the primary key), so a row that was both
committed and still journalled is written once. The directory is per database (a hash of the URL),
so services on one host that use different databases never replay each other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path

import orjson

from cds_service.storage.repo import IssuedCard

log = logging.getLogger("cds.storage")

REPLAY_CHUNK = 1000


def default_directory(db_url: str) -> Path:
    """``$TMPDIR/cds-issued-journal/<hash of the database>``: one directory per database."""
    key = db_url if not db_url.startswith("sqlite") else f"{db_url}@{os.getcwd()}"  # relative paths
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "cds-issued-journal" / digest


def _encode(card: IssuedCard) -> bytes:
    row = dict(card.__dict__)
    row["issued_at"] = card.issued_at.isoformat()
    return orjson.dumps(row) + b"\n"


def _decode(line: bytes) -> IssuedCard | None:
    try:
        row = orjson.loads(line)
        row["issued_at"] = datetime.fromisoformat(row["issued_at"])
        return IssuedCard(**row)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # a line cut short by the crash: it was never answered


class IssuedJournal:
    """The journal file of this process, and the replay of dead processes' files."""

    def __init__(self, directory: Path, fsync_seconds: float = 0.2) -> None:
        self.directory = directory
        self.fsync_seconds = fsync_seconds
        self.path: Path | None = None
        self._fd: int | None = None
        self._dirty = False
        self._syncer: asyncio.Task[None] | None = None

    def open(self) -> None:
        """Create and lock this process's file (raises OSError when the directory is unusable)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.directory / f"issued-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd
        self._syncer = asyncio.create_task(self._sync_loop(), name="issued-journal-fsync")

    def append(self, cards: Sequence[IssuedCard]) -> None:
        """Write the rows in one ``write(2)``; raises OSError (disk full...) for the caller to fall
        back on a direct database write."""
        assert self._fd is not None
        data = b"".join(_encode(c) for c in cards)
        written = os.write(self._fd, data)
        if written != len(data):  # a regular file short-writes only when the disk is full
            raise OSError("journal write was short")
        self._dirty = True

    def truncate(self) -> None:
        """Everything appended so far is committed: empty the file."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            self._dirty = False

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.fsync_seconds)
            if self._dirty and self._fd is not None:
                self._dirty = False
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(os.fsync, self._fd)

    async def close(self, committed: bool) -> None:
        """Stop syncing; delete the file when every row is committed, else keep it for replay."""
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
            self._syncer = None
        if self._fd is None:
            return
        if committed and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
        else:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
        os.close(self._fd)  # releases the lock: a later start-up replays what is left
        self._fd = None

    async def replay_orphans(self, write: Callable[[Sequence[IssuedCard]], Awaitable[None]]) -> int:
        """Write the rows of every journal whose owner is gone, then delete it; returns the rows
        replayed. A database failure propagates (the files stay, the next attempt retries)."""
        total = 0
        for path in sorted(self.directory.glob("issued-*.jsonl")):
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # replayed by a sibling process just now
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                with os.fdopen(os.dup(fd), "rb") as f:
                    cards = [c for line in f if line.strip() and (c := _decode(line)) is not None]
                for start in range(0, len(cards), REPLAY_CHUNK):
                    await write(cards[start : start + REPLAY_CHUNK])
                total += len(cards)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if total:
            log.warning(
                "issued-card rows replayed from the journal of a process that ended abruptly",
                extra={"fields": {"rows": total}},
            )
        return total
