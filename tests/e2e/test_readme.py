"""The README's copy-paste example must work against the real server, exactly as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.support.client import checked
from tests.support.servers import run_cds_server

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["./scripts/serve", "./scripts/test"]


def test_readme_curl_example() -> None:
    text = README.read_text()
    match = re.search(r"curl -s -X POST (\S+) \\\n\s+-H '[^']+' -d '(.*?)'\n", text, re.S)
    assert match is not None, "curl example not found"
    url, body = match.group(1), json.loads(match.group(2))
    assert url.startswith("http://127.0.0.1:8100/cds-services/")
    with run_cds_server() as server:
        assert httpx.get(server.url("/cds-services")).status_code == 200
        out = checked(httpx.post(server.url(url.removeprefix("http://127.0.0.1:8100")), json=body))
    indicators = [c["indicator"] for c in out["cards"]]
    assert indicators[0] == "critical"
    assert any(c["summary"].startswith("First-tier work-up incomplete") for c in out["cards"])
