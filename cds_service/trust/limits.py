"""Shape limits for parsed request bodies.

The byte limit (413) stops big bodies, but a small body can still be hostile: a few kilobytes of
``[[[[...]]]]`` make every recursive walker downstream (pydantic, our templates, the rules) deep in
the stack, and a body of tiny values can hold millions of elements. Both are checked once, right
after parsing, with an explicit stack so the check itself cannot overflow.

Walking every value of a 2 MB prefetch in Python costs more than parsing it, so ``fits_shape``
first reads both bounds off the raw bytes at C speed; only a body it cannot clear (one that may be
over a limit) is walked, so every answer and message stays exactly the walk's.
"""

from __future__ import annotations

import re
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


_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # one escape sequence inside a string (\" \\ \n \u...)
_STRING = re.compile(rb'"[^"]*"')
_DROP = bytes(range(256)).translate(None, b'"[]{},')  # everything but quotes, brackets and commas
_NOT_BRACKET = bytes(range(256)).translate(None, b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")


def fits_shape(body: bytes | bytearray, max_depth: int, max_elements: int) -> bool:
    """True when the JSON text ``body`` (already parsed successfully) is certainly within both
    limits; False means "may not be": run ``check_json_shape`` on the parsed value.

    With strings removed, the values of a JSON text number 1 + commas + non-empty containers,
    so 1 + commas + containers is an upper bound, and the nesting depth is how many rounds of
    deleting innermost ``[]`` pairs empty the bracket skeleton.
    """
    if b"\\" in body:
        body = _ESCAPE.sub(b"", body)  # escapes occur only in strings; now every quote delimits
    skeleton = body.translate(None, _DROP).replace(b'""', b"")  # strings without , [ ] { } in them
    if b'"' in skeleton:
        skeleton = _STRING.sub(b"", skeleton)
    upper = 1 + skeleton.count(b",") + skeleton.count(b"[") + skeleton.count(b"{")
    if upper > max_elements:
        return False
    brackets = skeleton.translate(_SQUARE, _NOT_BRACKET)
    depth = 0
    while brackets:
        if depth + 1 >= max_depth:
            return False  # a container this deep may hold a value past the limit: walk it
        brackets = brackets.replace(b"[]", b"")
        depth += 1
    return True
