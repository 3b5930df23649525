"""Keep a worker's resident memory flat after large request bodies.

glibc raises its mmap threshold every time a large block is freed (up to 32 MB). After the first
2 MB prefetch body, later ones are carved out of the main heap instead of private mappings, and
the heap keeps its high-water mark. Measured with the benchmark (docs/performance.md): a worker
serving a mix that includes 2,000-Observation prefetches settled at ~168 MB; with the threshold
fixed at 1 MB it settles at ~140 MB, with no measurable CPU cost (only blocks of 1 MB and more,
i.e. the largest bodies, get their own mappings, which go back to the system when freed).

glibc also gives each thread that allocates its own arena (up to 8 per core), and each arena keeps
its own high-water mark. A worker's threads are few and mostly idle (the SQLite driver's
connection threads, the journal's fsync), so two arenas are plenty: measured with 8 clients
sending the benchmark's mix, 163-166 MB with glibc's default against 151-155 MB with the cap
(issue 15; docs/performance.md).
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("cds.service")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1 << 20
ARENA_MAX = 2


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES, arenas: int = ARENA_MAX) -> bool:
    """Fix the C allocator's mmap threshold (which also stops glibc from raising it) and cap its
    arenas (before the worker starts threads); True when both are done. A no-op on C libraries
    without ``mallopt`` (macOS) or where it refuses (musl)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, nbytes)) and bool(mallopt(M_ARENA_MAX, arenas))
    if not done:
        log.debug("mallopt refused; allocator left as it is")
    return done
