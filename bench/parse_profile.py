"""The parts of a call every server pays, timed in-process on the benchmark's own bodies.

    .venv/bin/python -m bench.parse_profile

For each body: ``orjson.loads`` and freeing the result (what the floor does), the shape limits on
the raw bytes (``trust/limits.py`` ``fits_shape``) and one lower-case + find pass over the bytes
(the cost of one pattern pass of a byte-level pre-filter). CPU time (``time.process_time``), median
over many calls, with the service's GC settings, so a loaded machine moves the figures less than
wall time would. docs/performance.md quotes these figures as the bound of each target.
"""

from __future__ import annotations

import gc
import statistics
import time

import orjson

from bench.run import discovery_templates, request_bodies
from cds_service.trust.limits import fits_shape

BODIES = (("bg300-r01", 200), ("bg2000-r01", 30), ("bg2000-no-trigger", 30))


def main() -> None:
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)  # as the service's lifespan sets it
    bodies = request_bodies(discovery_templates())
    for name, calls in BODIES:
        body = bodies[name]
        loads, free, shape, scan = [], [], [], []
        for _ in range(calls):
            t0 = time.process_time()
            data = orjson.loads(body)
            t1 = time.process_time()
            del data
            t2 = time.process_time()
            fits_shape(body, 64, 200_000)
            t3 = time.process_time()
            body.lower().find(b"fascicul")
            t4 = time.process_time()
            loads.append(t1 - t0)
            free.append(t2 - t1)
            shape.append(t3 - t2)
            scan.append(t4 - t3)

        def ms(xs: list[float]) -> str:
            return f"{statistics.median(xs) * 1000:.2f}"

        print(f"{name}: {len(body) // 1024} KB; loads {ms(loads)} ms, free {ms(free)} ms, "
              f"fits_shape {ms(shape)} ms, lower+find {ms(scan)} ms")


if __name__ == "__main__":
    main()
