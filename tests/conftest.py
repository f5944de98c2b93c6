"""Shared fixtures: the embedded model, a tiny random model saved like a user's checkpoint, the data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def embedded():
    """(model, tokenizer) of the embedded SmolLM2-135M, through the same loader users get."""
    from s1.core.models import load_hf

    return load_hf("smollm2")


def build_tiny_model(tokenizer, path: Path, end_logit_scale: float = 2.0) -> Path:
    """A 2-layer random Llama on the embedded tokenizer, saved as a model directory.

    Random weights almost never pick an end-of-thinking token, so its output rows for
    `<|im_start|>` and `<|im_end|>` are scaled up: then the model tries to stop thinking every few
    dozen tokens, which is what the forcing paths need to be exercised. Large init keeps greedy
    choices far from ties, so numeric noise between batched and unbatched runs cannot flip them.
    """
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=1.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for token in (1, 2):
            model.lm_head.weight[token] *= end_logit_scale
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


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
