"""docs/testing.md (and the README's pointer to it) must not drift from the CLI: every
``cds-fasciculation`` command in their shell blocks must parse with the real argument parser. (What the commands do is tested, with free ports
instead of the documented ones, by tests/tools/test_ehr.py and tests/contract/test_conformance.py.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cds_service.cli import build_parser
from tests.support.servers import ROOT

DOCS = (ROOT / "docs" / "testing.md", ROOT / "README.md")
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
INNER = re.compile(r"\$\((cds-fasciculation [^)]*)\)")


def commands(doc: Path = DOCS[0]) -> list[str]:
    out = []
    for block in BLOCK.findall(doc.read_text()):
        text = re.sub(r"\\\n\s*", " ", block)  # join continuation lines
        text = re.sub(r"<<'EOF'\n.*?\nEOF\n", "\n", text, flags=re.S)  # drop heredoc bodies
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            out += INNER.findall(line)
            if line.startswith("cds-fasciculation "):
                out.append(line)
    return out


def subcommand(command: str) -> str:
    argv = shlex.split(command)
    return argv[2] if argv[1] == "ehr" else argv[1]


def test_the_doc_shows_every_simulator_command() -> None:
    shown = {subcommand(c) for c in commands()}
    assert {"load", "discover", "call", "prefetch", "feedback", "keys", "conformance"} <= shown


@pytest.mark.parametrize("command", [c for doc in DOCS for c in commands(doc)])
def test_command_parses(command: str) -> None:
    argv = shlex.split(command)
    args = build_parser().parse_args(argv[1:])
    assert callable(args.func)
