"""Thinking formats against real tokenizers, and model names resolving to weights."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from s1 import R1, S1, BudgetForcing, ThinkingFormat, UserError, generate
from s1.core.formats import FormatTokens, encode, eos_ids, get_format, render_prompt
from s1.core.models import embedded_gguf, resolve
from s1.engines.hf import HFEngine


def test_s1_prompt_opens_thinking_after_the_assistant_header(embedded):
    prompt = render_prompt(embedded[1], "What is 7*8?", S1)
    assert prompt.endswith("<|im_start|>user\nWhat is 7*8?<|im_end|>\n<|im_start|>assistant\n<|im_start|>think")


def test_s1_tokens_on_the_embedded_tokenizer(embedded):
    tokens = FormatTokens.build(embedded[1], S1)
    assert tokens.end_trigger_ids == {1, 2}
    assert tokens.natural_end(1) == (True, tuple(encode(embedded[1], "answer")))
    assert tokens.natural_end(2) == (False, tuple(encode(embedded[1], "<|im_start|>answer")))


def test_r1_on_a_tokenizer_without_a_think_token_matches_the_end_as_text(embedded):
    """`</think>` is several tokens of SmolLM2's tokenizer: the end is matched on the decoded text, and the
    tokens that wrote it leave the thinking for the format's delimiter."""
    from s1 import BudgetForcing
    from s1.core.forcing import ForcingState

    tokenizer = embedded[1]
    tokens = FormatTokens.build(tokenizer, R1)
    assert tokens.end_strings == ("</think>",) and tokens.end_trigger_ids == frozenset(eos_ids(tokenizer))
    script = iter(encode(tokenizer, "Seven eights are 56.</think>\n\n56") + [2])
    state = ForcingState(BudgetForcing(max_answer_tokens=20), tokens, cap=100, last_token=1)
    while not state.done:
        state.next_token(lambda: next(script))
    assert tokenizer.decode(state.output[: state.thinking_end]) == "Seven eights are 56."
    assert state.thinking_tokens == len(encode(tokenizer, "Seven eights are 56."))
    with pytest.raises(UserError, match="end of thinking"):
        FormatTokens.build(tokenizer, replace(R1, end_triggers=()))


def test_r1_on_a_tokenizer_that_has_think_tokens(tiny_dir, tmp_path):
    """An R1-style model: `</think>` is one token and the chat template already opens thinking."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'"
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    model.resize_token_embeddings(len(tokenizer))
    prompt = render_prompt(tokenizer, "Q", R1)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n") and prompt.count("<think>") == 1
    [c] = generate(
        "What is 7*8?", HFEngine(model, tokenizer, "r1"), BudgetForcing(max_thinking_tokens=10, max_answer_tokens=3)
    )
    assert c.capped and c.thinking_tokens == 10
    assert tokenizer.decode(c.output_token_ids).count("</think>\n\nFinal Answer:") == 1


def test_user_defined_format_is_plain_data(embedded):
    custom = ThinkingFormat(
        name="mine",
        think_start="<|im_start|>reasoning",
        think_end="<|im_start|>final",
        end_triggers=("<|im_start|>",),
        answer_separator="\n",
    )
    assert get_format(custom) is custom
    [c] = generate("Hi", HFEngine(*embedded, fmt=custom), BudgetForcing(max_thinking_tokens=5, max_answer_tokens=2))
    assert c.prompt.endswith("<|im_start|>reasoning")
    assert "<|im_start|>final" in embedded[1].decode(c.output_token_ids)


def test_names_resolve_to_sources(tiny_dir, tmp_path):
    assert resolve("smollm2").kind == "gguf" and resolve("smollm2").location.endswith(".gguf")
    assert resolve(str(tiny_dir)).kind == "dir"
    assert resolve("simplescaling/s1.1-32B").kind == "hub"
    with pytest.raises(UserError, match="no config.json"):
        resolve(str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        resolve(str(tmp_path / "missing.gguf"))


@pytest.mark.slow
def test_gguf_conversion_is_cached(tmp_path, monkeypatch):
    """The first load dequantizes into the cache; the second reads the cached safetensors (shown by content:
    a weight changed in the cache comes back changed; timing the loads would race a busy machine)."""
    import torch
    from safetensors.torch import load_file, save_file

    from s1.core.models import load_hf

    monkeypatch.setenv("S1_CACHE", str(tmp_path))
    load_hf("smollm2")
    saved = list((tmp_path / "models").glob("*/model.safetensors"))
    assert len(saved) == 1
    tensors = load_file(str(saved[0]))
    name = sorted(tensors)[0]
    tensors[name] = torch.full_like(tensors[name], 0.125)
    save_file(tensors, str(saved[0]), metadata={"format": "pt"})
    model, _ = load_hf(str(embedded_gguf()))
    assert torch.all(model.state_dict()[name] == 0.125), "the second load did not read the cache"
    assert next(model.parameters()).dtype.is_floating_point
    assert not [p for p in os.listdir(tmp_path / "models") if p.startswith(".tmp")]
