"""llama.cpp engine (llama-cpp-python): GGUF models on CPU, budget forcing in flight, continuous batching.

Many sequences share one llama.cpp context, each in its own KV stream (a sequence id with its own
cells, as llama-server's slots); the shared `batching.BatchLoop` decides what each step feeds and
`Runtime.forward` feeds it as one `llama_batch`. A finished sequence's stream goes to the next
waiting request, keeping the prefix the two prompts share. Prompts are rendered and encoded with the
GGUF's own tokenizer through transformers, so the token ids are the same as the other engines'.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from s1.core.errors import UserError, named
from s1.core.formats import FormatTokens, ThinkingFormat, get_format
from s1.core.models import resolve
from s1.engines.base import OnToken
from s1.engines.batching import BATCH_TOKENS, BatchLoop, LoopEngine
from s1.engines.threads import RECHECK_SECONDS, BusyMeter, free_cores

DEFAULT_CONTEXT = 8192
"""Tokens per sequence when no --ctx-size is given (capped at the model's trained context)."""


class Runtime:
    """One GGUF model and one llama.cpp context with `parallel` KV streams of `n_ctx_seq` cells each.

    Streams are not unified: a token attends only to its own sequence's cells, so eight sequences of
    a thousand tokens cost each step the attention of one thousand, not eight. `held` records which
    tokens each stream's cells hold, so a new prompt can keep the prefix it shares with the last one
    there (chat prompts share their template and system prompt), as llama-server's slots do.
    """

    def __init__(self, path: str, parallel: int = 1, n_ctx_seq: int | None = None, threads: int | None = None):
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        set_verbose(False)
        self.api = llama_cpp
        limit = llama_cpp.llama_max_parallel_sequences()
        if not 1 <= parallel <= limit:
            raise UserError(f"llama.cpp runs 1 to {limit} sequences at once; got {named('batch_size')} {parallel}.")
        if threads is not None and threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}.")
        self.model = _internals.LlamaModel(
            path_model=path, params=llama_cpp.llama_model_default_params(), verbose=False
        )
        trained = self.model.n_ctx_train()
        per_sequence = n_ctx_seq if n_ctx_seq is not None else min(trained, DEFAULT_CONTEXT)
        if per_sequence < 16:
            raise UserError(
                f"The context per sequence would be {per_sequence} tokens; raise {named('ctx_size')} or lower "
                f"{named('batch_size')}."
            )
        if per_sequence * parallel > 2**31 - 1:
            raise UserError(f"--ctx-size {per_sequence * parallel} is more than llama.cpp can address; lower it.")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = per_sequence * parallel
        params.n_seq_max = parallel
        params.kv_unified = False
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        # with no --threads, the cores other processes leave free, read again as it runs (engines/threads.py):
        # two threads on two cores of which another process keeps one busy wait at every barrier
        self.meter = None if threads else BusyMeter()
        params.n_threads = params.n_threads_batch = threads or free_cores()
        self.threads, self.checked = params.n_threads, time.monotonic()
        try:
            self.context = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        except ValueError:
            raise UserError(
                f"llama.cpp could not allocate a context of {parallel} × {per_sequence} tokens; lower "
                f"{named('batch_size')} or {named('ctx_size')}."
            ) from None
        raw = self.model.model
        self.keeps_prefixes = not (
            llama_cpp.llama_model_is_recurrent(raw)
            or llama_cpp.llama_model_is_hybrid(raw)
            or llama_cpp.llama_model_n_swa(raw) > 0
        )
        """Whether a stream's leading cells can be kept for the next prompt: not for recurrent or hybrid
        models (their state cannot be cut) nor sliding-window ones (old cells may be gone)."""
        self.batch = _internals.LlamaBatch(n_tokens=BATCH_TOKENS, embd=0, n_seq_max=1, verbose=False)
        self.slots = parallel
        self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(self.context.ctx))
        self.vocab_size = self.model.n_vocab()
        self.held: list[list[int]] = [[] for _ in range(parallel)]

    def forward(self, runs: list[tuple[int, int, list[int], int]]) -> list[torch.Tensor | None]:
        """Feed runs of (sequence id, first position, tokens, want) in one batch (see `batching`); returns
        per run its last token's logits (want 1), every token's (want 2) or None (want 0)."""
        where = self.decode(runs)
        out = []
        for (_, _, tokens, want), last in zip(runs, where):
            if want == 0:
                out.append(None)
            elif want == 1:
                out.append(torch.from_numpy(self.logits(last).copy()))
            else:
                out.append(
                    torch.from_numpy(np.stack([self.logits(i) for i in range(last - len(tokens) + 1, last + 1)]))
                )
        return out

    def decode(self, runs: list[tuple[int, int, list[int], int]]) -> list[int | None]:
        """Feed the runs in one `llama_batch`; returns per run the batch index of its last token (None where
        no logits were asked)."""
        self._follow_free_cores()
        b = self.batch.batch
        b.n_tokens = 0
        where = []
        for seq, start, tokens, want in runs:
            for offset, token in enumerate(tokens):
                j = b.n_tokens
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = token, start + offset, 1, want == 2
                b.seq_id[j][0] = seq
                b.n_tokens = j + 1
            b.logits[b.n_tokens - 1] = bool(want)
            where.append(b.n_tokens - 1 if want else None)
        code = self.api.llama_decode(self.context.ctx, b)
        if code != 0:
            self.clear()  # what the cells hold is unknown now
            raise RuntimeError(f"llama_decode returned {code}")
        for seq, start, tokens, _ in runs:
            if len(self.held[seq]) < start:  # cannot happen while callers feed positions in order; if it did,
                self.held[seq] = []  # what the stream holds is unknown, so nothing of it is reused
            else:
                self.held[seq][start:] = tokens
        return where

    def _follow_free_cores(self) -> None:
        if self.meter is None or time.monotonic() - self.checked < RECHECK_SECONDS:
            return
        threads = free_cores(self.meter)
        self.meter, self.checked = BusyMeter(), time.monotonic()
        if threads != self.threads:
            self.api.llama_set_n_threads(self.context.ctx, threads, threads)
            self.threads = threads

    def logits(self, index: int) -> np.ndarray:
        return np.ctypeslib.as_array(self.api.llama_get_logits_ith(self.context.ctx, index), shape=(self.vocab_size,))

    def forget(self, seq: int, start: int = 0) -> None:
        """Free a sequence's cells from `start` on (all of them by default, or when a cut is refused)."""
        if not self.api.llama_memory_seq_rm(self.context.memory, seq, start, -1):
            self.api.llama_memory_seq_rm(self.context.memory, seq, -1, -1)
            start = 0
        del self.held[seq][start:]

    def rewind(self, seq: int, n: int) -> None:
        """Keep the stream's first n tokens, so the next decode writes their successors afresh."""
        self.forget(seq, n)

    def shared(self, seq: int, ids: list[int]) -> int:
        """How many leading tokens of `ids` the stream already holds (never all: the last one is fed again,
        for fresh logits)."""
        if not self.keeps_prefixes:
            return 0
        n = 0
        for a, b in zip(self.held[seq], ids[:-1]):
            if a != b:
                break
            n += 1
        return n

    def reuse(self, seq: int, ids: list[int]) -> int:
        """Keep the stream's prefix shared with `ids`, free the rest; returns the tokens kept."""
        self.forget(seq, self.shared(seq, ids))
        return len(self.held[seq])

    def acquire(self, free: list[int], ids: list[int], reuse: bool = True, fork: bool = False) -> tuple[int, int, None]:
        """The free stream holding most of this prompt, and how many of its tokens it keeps (the last token
        is always fed again, so no logits are held)."""
        if not reuse:
            self.forget(free[0])
            return free[0], 0, None
        seq = max(free, key=lambda s: self.shared(s, ids))
        return seq, self.reuse(seq, ids), None

    def fork(self, source: int, seq: int, n: int) -> None:
        """Give stream `seq` a copy of the first n tokens of a running stream (a shared sweep's branch).
        Streams are separate buffers, and llama.cpp copies between them only whole: copy, then cut."""
        if not self.keeps_prefixes:
            raise RuntimeError("this model's streams cannot be cut, so they are not forked")
        self.forget(seq)
        self.api.llama_memory_seq_cp(self.context.memory, source, seq, -1, -1)
        self.held[seq] = list(self.held[source])
        self.forget(seq, n)

    def release(self, seq: int, logits=None) -> None:
        """A finished or paused sequence's cells stay, for a later prompt with the same start (one child of a
        paused search node continues in them; its siblings keep what other free streams share with it)."""

    def clear(self) -> None:
        self.api.llama_memory_clear(self.context.memory, True)
        self.held = [[] for _ in range(self.slots)]


class LlamaCppEngine(LoopEngine):
    def __init__(self, runtime: Runtime, tokenizer, fmt: str | ThinkingFormat = "s1"):
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.fmt = get_format(fmt)
        self.format_tokens = FormatTokens.build(tokenizer, self.fmt)

    @classmethod
    def load(
        cls,
        name: str,
        fmt: str | ThinkingFormat = "s1",
        parallel: int = 1,
        ctx_size: int | None = None,
        threads: int | None = None,
    ) -> LlamaCppEngine:
        """`parallel` sequences run at once; `ctx_size` is the KV cells of all of them together, as
        llama-server's --ctx-size with --parallel (default: 8192 per sequence, or the trained context)."""
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise UserError(
                "The llamacpp engine needs llama-cpp-python; run `bash scripts/setup.sh --dev` (it compiles it once)."
            ) from None
        from transformers import AutoTokenizer

        source = resolve(name)
        if source.kind != "gguf":
            raise UserError(
                f"The llamacpp engine runs GGUF files; {name} is not one (use {named('engine')} hf for it)."
            )
        if ctx_size is not None and ctx_size < 1:
            raise UserError(f"--ctx-size must be a positive number of tokens, got {ctx_size}.")
        path = Path(source.location)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
        runtime = Runtime(str(path), parallel, ctx_size // max(parallel, 1) if ctx_size else None, threads)
        return cls(runtime, tokenizer, fmt)

    @property
    def context_length(self) -> int:
        return self.runtime.n_ctx_seq

    def loop(self, max_batch: int = 8, on_token: OnToken | None = None) -> BatchLoop:
        return BatchLoop(self.runtime, self.format_tokens, max_batch, on_token)

    def choose(self, prompt_ids: list[int], options: list[list[int]]) -> int:
        """The index of the option (token sequence) constrained greedy decoding writes after the prompt.

        The part of the prompt already in sequence 0's cells is kept (classification prompts share a long
        list of labels), so only the new tail is evaluated. Not to be called while a `loop` is running."""
        from s1.engines.sampling import choose_option

        runtime = self.runtime
        last = {}

        def feed(tokens: list[int]) -> None:
            for start in range(0, len(tokens), BATCH_TOKENS):
                chunk = tokens[start : start + BATCH_TOKENS]
                [last["at"]] = runtime.decode([(0, len(runtime.held[0]), chunk, 1)])

        feed(prompt_ids[runtime.reuse(0, prompt_ids) :])
        choice = choose_option(options, lambda: runtime.logits(last["at"]), lambda token: feed([token]))
        runtime.forget(0, len(prompt_ids))
        return choice
