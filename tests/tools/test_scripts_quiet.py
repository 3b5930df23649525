"""scripts/bootstrap (used by scripts/serve and scripts/test) keeps the console quiet on a first
run (issue 12): one line saying what it does and where the log is, pip's pages in the log, nothing
at all when up to date, and on failure the log's last lines. Run on a copy of the script with a
tiny project, so the real .venv is not touched (pip still installs for real)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import ROOT

pytestmark = pytest.mark.e2e

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "quiet-probe"
version = "0.0.1"

[tool.setuptools]
py-modules = ["quiet_probe"]
"""


def project(tmp_path: Path, pyproject: str) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "quiet_probe.py").write_text("VALUE = 1\n")
    return tmp_path


def run(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(folder)}
    return subprocess.run(
        ["bash", str(folder / "scripts" / "bootstrap")], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def test_first_run_is_one_line_and_a_log(tmp_path: Path) -> None:
    folder = project(tmp_path, PYPROJECT)
    first = run(folder)
    assert first.returncode == 0, first.stderr
    log = folder / ".venv" / "bootstrap.log"
    assert first.stderr == ""
    assert first.stdout.splitlines() == [
        f"bootstrap: installing the project into .venv (first run or pyproject.toml changed); log: {log}",
        "bootstrap: done",
    ]
    assert "Successfully installed" in log.read_text()
    again = run(folder)
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""


def test_failure_shows_the_end_of_the_log(tmp_path: Path) -> None:
    folder = project(tmp_path, PYPROJECT.replace('version = "0.0.1"', 'version = "not a version at all!"'))
    result = run(folder)
    assert result.returncode == 1
    assert f"bootstrap: install failed; the last lines of {folder / '.venv' / 'bootstrap.log'}:" in result.stderr
    assert len(result.stderr.splitlines()) <= 21
