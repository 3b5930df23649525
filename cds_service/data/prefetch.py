"""What a service asks the data layer for: one prefetch template and its failure policy.

It lives in the data layer, not in the registry, because the data layer is what reads it
(``gather.py`` renders, fetches and judges each key by it); the registry only holds a tuple of them
per service. With the declaration here, ``registry`` depends on ``data`` and never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrefetchSpec:
    """One prefetch template and what to do when its data cannot be had."""

    key: str
    template: str
    required: bool = False
    all_pages: bool = False  # follow Bundle.link[next] up to the page cap
