"""ruff check and ruff format (settings in pyproject.toml) pass: lint is enforced by the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["lit_ffn", "tests", "scripts"]


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: pip install -e '.[dev]' brings it")
    return [exe]


def test_ruff_check_is_clean() -> None:
    done = subprocess.run(
        [*_ruff(), "check", "--no-cache", *TARGETS], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_clean() -> None:
    done = subprocess.run(
        [*_ruff(), "format", "--check", "--no-cache", *TARGETS], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, "run `ruff format lit_ffn tests scripts`:\n" + done.stdout + done.stderr
