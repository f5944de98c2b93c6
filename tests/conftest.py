"""Shared fixtures: the embedded model, a tiny random model saved like a user's checkpoint, the data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def embedded():
    """(model, tokenizer) of the embedded SmolLM2-135M, through the same loader users get."""
    from s1.core.models import load_hf

    return load_hf("smollm2")


def build_tiny_model(tokenizer, path: Path, end_logit_scale: float = 2.0) -> Path:
    """The tiny random model (s1.demo.tiny.random_llama, which bench/sweep.py builds too), saved at `path`."""
    from s1.demo.tiny import random_llama

    return random_llama(tokenizer, path, end_logit_scale)


@pytest.fixture(scope="session")
def tiny_dir(embedded, tmp_path_factory):
    return build_tiny_model(embedded[1], tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from s1.core.models import load_hf

    return load_hf(str(tiny_dir))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data: real benchmark data, read in place, never copied into the project."""
    assert DATA.is_dir(), f"{DATA} is missing: the tests read the shared benchmark data from beside the checkout"
    return DATA
