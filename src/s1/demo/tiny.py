"""A tiny student for the demo: a character-level tokenizer with a ChatML template, and a small
Llama trained from scratch. It is built locally (nothing to download) and is saved as an ordinary
transformers directory, so `s1 train` and `s1 eval` treat it like any other model.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SHAPE = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4)
CONTEXT = 384


def char_tokenizer():
    """Byte-level tokens with no merges: one token per character of ASCII text, 259 ids in all."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIALS),
        model_max_length=CONTEXT,
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def build(directory: str | Path, seed: int = 0) -> Path:
    """Save a freshly initialised tiny model and its tokenizer into `directory` (once)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    tokenizer = char_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=CONTEXT,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **SHAPE,
    )
    model = LlamaForCausalLM(config)
    tmp = directory.with_name(directory.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(directory)
    return directory


def describe() -> str:
    return (
        f"{SHAPE['num_hidden_layers']}-layer, {SHAPE['hidden_size']}-wide character-level Llama "
        f"(about {parameters() / 1e6:.1f}M parameters)"
    )


def parameters() -> int:
    """Weights of the tiny model (embeddings tied), without building it."""
    d, f, layers, vocab = (
        SHAPE["hidden_size"],
        SHAPE["intermediate_size"],
        SHAPE["num_hidden_layers"],
        256 + len(SPECIALS),
    )
    return vocab * d + layers * (4 * d * d + 3 * d * f + 2 * d) + d


def random_llama(tokenizer, path: str | Path, end_logit_scale: float = 2.0, context: int = 2048) -> Path:
    """A 2-layer random Llama on `tokenizer` (the embedded SmolLM2's), saved as a model directory: the tests'
    tiny model and bench/sweep.py's, one definition for both.

    Random weights almost never pick an end-of-thinking token, so its output rows for `<|im_start|>` and
    `<|im_end|>` (ids 1 and 2) are scaled up: then the model tries to stop thinking every few dozen tokens,
    which is what the forcing paths (and a Wait sweep) need to be exercised. Large init keeps greedy choices
    far from ties, so numeric noise between batched and unbatched runs cannot flip them. `context` changes
    no weight.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    path = Path(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
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
