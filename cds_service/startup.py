"""Refusing to start, readably: every configuration problem as one line, then a non-zero exit.

A refused start used to end in a Python traceback (pydantic's, or the app factory's inside
uvicorn's), with the actual problem somewhere in the middle. ``serve`` now reads the settings and
builds the app itself before uvicorn runs it, and turns what that raises into one line per problem
naming the setting. The lines never contain secret values: pydantic's input echo is left out.
"""

from __future__ import annotations

import sys
from typing import TextIO

from pydantic import ValidationError


def problems_of(exc: BaseException) -> list[str]:
    """One human line per problem in ``exc`` (a settings or app-construction error)."""
    if isinstance(exc, ValidationError):
        lines = []
        for err in exc.errors(include_url=False, include_input=False, include_context=False):
            loc = [str(p) for p in err["loc"]]
            for message in err["msg"].removeprefix("Value error, ").splitlines():
                if not loc:
                    lines.append(message)
                elif exc.title == "Settings":
                    lines.append(f"CDS_{loc[0].upper()}{''.join(f'[{p}]' for p in loc[1:])}: {message}")
                else:
                    lines.append(f"{exc.title} {'.'.join(loc)}: {message}")
        return lines or [str(exc).splitlines()[0]]
    text = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, ValueError | OSError | ImportError | LookupError):
        return text or [type(exc).__name__]
    return [f"{type(exc).__name__}: {text[0] if text else 'no detail'}"]


def refuse(problems: list[str], stream: TextIO | None = None) -> int:
    """Print the problems, one per line, to stderr; the exit code of a refused start (2)."""
    for p in problems:
        print(f"cds-fasciculation: refusing to start: {p}", file=stream or sys.stderr)
    return 2
