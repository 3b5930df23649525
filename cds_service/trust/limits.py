"""Shape limits for parsed request bodies.

The byte limit (413) stops big bodies, but a small body can still be hostile: a few kilobytes of
``[[[[...]]]]`` make every recursive walker downstream (pydantic, our templates, the rules) deep in
the stack, and a body of tiny values can hold millions of elements. Both are checked once, right
after parsing, with an explicit stack so the check itself cannot overflow.
"""

from __future__ import annotations

from typing import Any

from cds_service.protocol.errors import BadRequest, CdsError


def check_json_shape(data: Any, max_depth: int, max_elements: int) -> None:
    """Raise 400 when nesting is deeper than ``max_depth``, 413 beyond ``max_elements`` values."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > max_elements:
            raise CdsError(413, f"Request body has more than {max_elements} JSON values")
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth >= max_depth and children:
            raise BadRequest(f"Request body is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
