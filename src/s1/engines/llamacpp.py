"""llama.cpp engine (llama-cpp-python): GGUF models on CPU, budget forcing in flight.

One sequence at a time over llama.cpp's own KV cache: the model's choices are sampled from its
logits, and runs of forced tokens (an extension, the end delimiter and answer prefix) are fed in one
`eval` call, so forcing costs one small batched forward instead of a step per token and no prompt is
ever processed twice. Prompts are rendered and encoded with the GGUF's own tokenizer through
transformers, so the token ids are the same as the other engines'.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..formats import FormatTokens, ThinkingFormat, get_format
from ..models import resolve
from .base import Completion, OnCompletion, OnToken, Request, Sampling, new_state, to_completion


def _pick(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator | None) -> int:
    if sampling.greedy:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / sampling.temperature
    order = np.argsort(-scaled)
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    if sampling.top_p < 1:
        keep = (np.cumsum(probs) - probs) < sampling.top_p
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum()
    return int(order[rng.choice(len(probs), p=probs)])


class LlamaCppEngine:
    def __init__(self, llm, tokenizer, fmt: str | ThinkingFormat = "s1"):
        self.llm = llm
        self.tokenizer = tokenizer
        self.fmt = get_format(fmt)
        self.format_tokens = FormatTokens.build(tokenizer, self.fmt)

    @classmethod
    def load(cls, name: str, fmt: str | ThinkingFormat = "s1", n_ctx: int = 8192, n_threads: int | None = None) -> "LlamaCppEngine":
        try:
            from llama_cpp import Llama
        except ImportError:
            raise UserError("The llamacpp engine needs llama-cpp-python; run `bash scripts/setup.sh --dev` (it compiles it once).") from None
        from transformers import AutoTokenizer

        source = resolve(name)
        if source.kind != "gguf":
            raise UserError(f"The llamacpp engine runs GGUF files; {name} is not one (use --engine hf for it).")
        path = Path(source.location)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
        llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(), n_batch=512, verbose=False)
        return cls(llm, tokenizer, fmt)

    @property
    def context_length(self) -> int:
        return int(self.llm.n_ctx())

    def generate(
        self,
        requests: list[Request],
        batch_size: int = 1,
        on_token: OnToken | None = None,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]:
        completions = []
        for i, request in enumerate(requests):
            completions.append(self._one(i, request, on_token))
            if on_completion:
                on_completion(i, completions[-1])
        return completions

    def choose(self, prompt_ids: list[int], options: list[list[int]]) -> int:
        """The index of the option (token sequence) constrained greedy decoding writes after the prompt.

        The part of the prompt already in llama.cpp's cache is kept (classification prompts share a long
        list of labels), so only the new tail is evaluated."""
        from .sampling import choose_option

        self._feed_prompt(prompt_ids)
        return choose_option(options, self._last_logits, lambda token: self.llm.eval([token]))

    def _feed_prompt(self, ids: list[int]) -> None:
        llm = self.llm
        keep = 0
        if not (getattr(llm, "_is_recurrent", True) or getattr(llm, "_is_hybrid", True)) and llm.n_tokens:
            n = min(llm.n_tokens, len(ids) - 1)  # at least one token is evaluated, for fresh logits
            same = llm.input_ids[:n] == np.asarray(ids[:n])
            keep = n if same.all() else int(np.argmin(same))
        if keep == 0:
            llm.reset()
        llm.n_tokens = keep  # eval() drops the cache from here on
        llm.eval(ids[keep:])

    def _last_logits(self) -> np.ndarray:
        """Logits after the last evaluated token (llama-cpp-python keeps no copy unless logits_all)."""
        ctx = self.llm._ctx
        return np.ctypeslib.as_array(ctx.get_logits_ith(-1), shape=(self.llm.n_vocab(),))

    def _one(self, index: int, request: Request, on_token: OnToken | None) -> Completion:
        llm = self.llm
        state = new_state(request, self.format_tokens)
        sampling = request.sampling
        rng = None if sampling.greedy else np.random.default_rng(sampling.seed)
        llm.reset()
        llm.eval(request.prompt_token_ids)
        feed: list[int] = []
        while not state.done:
            if not state.needs_sample():
                token = state.next_token(lambda: -1)  # never called: the state forces this token
                if token is None:
                    break
                feed.append(token)
            else:
                if feed:
                    llm.eval(feed)
                    feed = []
                pick = _pick(self._last_logits(), sampling, rng)
                token = state.next_token(lambda: pick)
                if token is None:
                    break
                if not state.done:
                    feed.append(token)
            if on_token:
                on_token(index, token, state)
        return to_completion(request, state, self.tokenizer, self.fmt)
