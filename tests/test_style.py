"""The project's own style gates, so CI enforces them through the one test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKE_FILES = ["Snakefile", "rules"]


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "ruff"), "check", "src", "tests", "scripts"],
        [str(BIN / "ruff"), "format", "--check", "src", "tests", "scripts"],
        [str(BIN / "snakefmt"), "--check", *SNAKE_FILES],
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_style(command):
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
