"""The project's style is checked, not hoped for: ruff's lint and formatter over every Python file (pyproject.toml
holds the rules, line length 120), run by the test command CI runs."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TREES = ["src", "tests", "bench", "scripts"]


def ruff() -> str:
    found = Path(sys.executable).with_name("ruff")
    if found.exists():
        return str(found)
    path = shutil.which("ruff")
    if path is None:
        pytest.fail("ruff is not installed: run `bash scripts/setup.sh --dev`, which installs it with the test tools.")
    return path


def test_ruff_finds_nothing_to_lint():
    run = subprocess.run([ruff(), "check", *TREES], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_file_is_formatted_as_ruff_formats_it():
    run = subprocess.run([ruff(), "format", "--check", *TREES], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
