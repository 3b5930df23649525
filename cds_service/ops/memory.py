"""Keep a worker's resident memory flat after large request bodies.

glibc raises its mmap threshold every time a large block is freed (up to 32 MB). After the first
2 MB prefetch body, later ones are carved out of the main heap instead of private mappings, and
the heap keeps its high-water mark. Measured with the benchmark (docs/performance.md): a worker
serving a mix that includes 2,000-Observation prefetches settled at ~168 MB; with the threshold
fixed at 1 MB it settles at ~140 MB, with no measurable CPU cost (only blocks of 1 MB and more,
i.e. the largest bodies, get their own mappings, which go back to the system when freed).
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("cds.service")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 1 << 20


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix the C allocator's mmap threshold (which also stops glibc from raising it); True when
    done. A no-op on C libraries without ``mallopt`` (macOS) or where it refuses (musl)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, nbytes))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; allocator left as it is")
    return done
