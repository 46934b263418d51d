"""The packages type-check under mypy --strict and pass ruff: the issue's "done when", kept true."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.timeout(600)
def test_mypy_strict_passes_on_both_packages() -> None:
    result = _run("mypy")  # strict, packages proxypool and scrapy_ext: see pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_passes() -> None:
    result = _run("ruff", "check", "proxypool", "scrapy_ext", "tests", "benchmarks", "examples")
    assert result.returncode == 0, result.stdout + result.stderr
