"""The answer after thinking constrained by a grammar (llguidance, the library vLLM and llama.cpp use for it),
the thinking left free: a JSON schema (the server's `response_format`) shapes the answer only, so budget
forcing caps and extends the thinking as usual. The in-flight engines mask each answer token's logits with
the grammar's allowed set; an answer stop token is allowed once the grammar accepts.
"""

from __future__ import annotations

import json
from functools import lru_cache

import torch

from s1.core.errors import UserError


def _llguidance():
    try:
        import llguidance
        import llguidance.hf
        import llguidance.torch
    except ImportError:
        raise UserError(
            "response_format json_object / json_schema needs llguidance; install it (pip install llguidance)."
        ) from None
    return llguidance


def json_grammar(schema: dict | None) -> str:
    """The grammar for JSON matching `schema` (None: any JSON object), compact (no free whitespace, so a small
    model cannot pad its answer with blanks until it runs out of tokens)."""
    llguidance = _llguidance()
    schema = {"type": "object"} if schema is None else schema
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), defaults={"whitespace_flexible": False}
        )
        message = llguidance.LLMatcher.validate_grammar(grammar)
    except (ValueError, TypeError, RuntimeError) as exc:
        message = str(exc) or type(exc).__name__
    if message:
        raise UserError(f"The JSON schema cannot be used: {message.strip().splitlines()[0]}; fix the schema.")
    return grammar


@lru_cache(maxsize=4)
def _tokenizer(tokenizer):
    return _llguidance().hf.from_tokenizer(tokenizer)


class AnswerGrammar:
    """One sequence's grammar over its answer: fed the answer's sampled tokens as they come, it masks the
    logits of the next one."""

    def __init__(self, tokenizer, grammar: str):
        llguidance = _llguidance()
        self.lib = llguidance
        self.tokenizer = _tokenizer(tokenizer)
        self.matcher = llguidance.LLMatcher(self.tokenizer, grammar)
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, self.tokenizer.vocab_size)
        self.consumed = 0

    def mask(self, logits: torch.Tensor, answer: list[int], stop_ids) -> torch.Tensor:
        """`logits` (1-D) for the token after `answer` (the answer's sampled tokens so far), with every token the
        grammar forbids at -inf; the answer's stop tokens are allowed once the grammar accepts (and only then)."""
        for token in answer[self.consumed :]:
            if not self.matcher.is_stopped():
                self.matcher.consume_token(token)
        self.consumed = len(answer)
        n = logits.shape[-1]
        allowed = torch.zeros(n, dtype=torch.bool)
        if not self.matcher.is_error() and not self.matcher.is_stopped():
            self.lib.torch.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
            bits = (self.bitmask[0].unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
            bits = bits.flatten().bool()[: min(n, self.tokenizer.vocab_size)]
            allowed[: len(bits)] = bits
        if self.matcher.is_accepting() or self.matcher.is_stopped() or self.matcher.is_error():
            allowed[[t for t in stop_ids if t < n]] = True
        return logits.masked_fill(~allowed.to(logits.device), float("-inf"))
