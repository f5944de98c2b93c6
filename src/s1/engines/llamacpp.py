"""llama.cpp engine (llama-cpp-python): GGUF models on CPU, budget forcing in flight, continuous batching.

Many sequences share one llama.cpp context, each in its own KV stream (a sequence id with its own
cells, as llama-server's slots): every step builds one `llama_batch` holding, for each running
sequence, the tokens it needs fed — its last sampled token, or a whole run of forced tokens (an
extension, the end delimiter and answer prefix) — plus a chunk of any prompt still joining, so a
long prompt enters over several steps while the others keep decoding. A finished sequence frees its
cells at once and the next waiting request takes its id. Prompts are rendered and encoded with the
GGUF's own tokenizer through transformers, so the token ids are the same as the other engines'.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..forcing import ForcingState
from ..formats import FormatTokens, ThinkingFormat, get_format
from ..models import resolve
from .base import Completion, OnCompletion, OnToken, Request, Sampling, new_state, run_loop

DEFAULT_CONTEXT = 8192
"""Tokens per sequence when no --ctx-size is given (capped at the model's trained context)."""
BATCH_TOKENS = 512
"""Tokens one step may feed in all (llama.cpp's n_batch): running sequences first, then prompt chunks."""
STEP_SECONDS = 0.25
"""While sequences are decoding, a joining prompt's chunk is sized so that a step takes about this long:
a long prompt then delays each running sequence's next token by a fraction of a second, not by its
whole prefill."""
MIN_CHUNK = 16


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
            raise UserError(f"llama.cpp runs 1 to {limit} sequences at once; got a batch size of {parallel}.")
        if threads is not None and threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}.")
        self.model = _internals.LlamaModel(path_model=path, params=llama_cpp.llama_model_default_params(), verbose=False)
        trained = self.model.n_ctx_train()
        per_sequence = n_ctx_seq or min(trained, DEFAULT_CONTEXT)
        if per_sequence < 16:
            raise UserError(f"The context per sequence would be {per_sequence} tokens; raise --ctx-size or lower --batch-size.")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = per_sequence * parallel
        params.n_seq_max = parallel
        params.kv_unified = False
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
        self.threads = params.n_threads
        self.context = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=BATCH_TOKENS, embd=0, n_seq_max=1, verbose=False)
        self.parallel = parallel
        self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(self.context.ctx))
        self.n_vocab = self.model.n_vocab()
        self.held: list[list[int]] = [[] for _ in range(parallel)]

    def decode(self, runs: list[tuple[int, int, list[int], bool]]) -> list[int | None]:
        """Feed runs of (sequence id, first position, tokens, want logits) in one batch; returns, per run,
        the batch index whose logits `logits` reads (None where none were asked)."""
        b = self.batch.batch
        b.n_tokens = 0
        where = []
        for seq, start, tokens, want in runs:
            for offset, token in enumerate(tokens):
                j = b.n_tokens
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = token, start + offset, 1, False
                b.seq_id[j][0] = seq
                b.n_tokens = j + 1
            b.logits[b.n_tokens - 1] = want
            where.append(b.n_tokens - 1 if want else None)
        code = self.api.llama_decode(self.context.ctx, b)
        if code != 0:
            self.clear()  # what the cells hold is unknown now
            raise RuntimeError(f"llama_decode returned {code}")
        for seq, start, tokens, _ in runs:
            self.held[seq][start:] = tokens
        return where

    def logits(self, index: int) -> np.ndarray:
        return np.ctypeslib.as_array(self.api.llama_get_logits_ith(self.context.ctx, index), shape=(self.n_vocab,))

    def forget(self, seq: int, start: int = 0) -> None:
        """Free a sequence's cells from `start` on (all of them by default)."""
        self.api.llama_memory_seq_rm(self.context.memory, seq, start, -1)
        del self.held[seq][start:]

    def shared(self, seq: int, ids: list[int]) -> int:
        """How many leading tokens of `ids` the stream already holds (never all: the last one is fed again,
        for fresh logits)."""
        n = 0
        for a, b in zip(self.held[seq], ids[:-1]):
            if a != b:
                break
            n += 1
        return n

    def reuse(self, seq: int, ids: list[int]) -> int:
        """Keep the stream's prefix shared with `ids`, free the rest; returns the tokens kept."""
        keep = self.shared(seq, ids)
        self.forget(seq, keep)
        return keep

    def clear(self) -> None:
        self.api.llama_memory_clear(self.context.memory, True)
        self.held = [[] for _ in range(self.parallel)]


@dataclass
class _Seq:
    index: int
    request: Request
    state: ForcingState
    rng: np.random.Generator | None
    seq: int
    """llama.cpp sequence id, which is also its KV stream."""
    pending: list[int] = field(default_factory=list)
    """Tokens to feed before the model's next choice: the prompt (or what is left of it), then a sampled
    token and any forced run after it."""
    position: int = 0
    """Tokens of this sequence already in the KV cache."""
    logprobs = None
    prompt_logprobs = None


class BatchLoop:
    """A running batch over a `Runtime`; the same interface as the transformers engine's `DecodeLoop`:
    `add` queues a request, each `step` admits what fits and advances every sequence by one choice."""

    def __init__(self, runtime: Runtime, format_tokens: FormatTokens, max_batch: int = 8, on_token: OnToken | None = None):
        self.runtime = runtime
        self.format_tokens = format_tokens
        self.max_batch = min(max_batch, runtime.parallel)
        self.on_token = on_token
        self.rows: list[_Seq] = []
        self.waiting: deque[tuple[int, Request]] = deque()
        self.free = list(range(self.max_batch))
        self.failed: list[tuple[int, Exception]] = []
        self.rate: float | None = None
        """Tokens per second the last steps fed (an average), which sizes prompt chunks."""

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.waiting)

    def add(self, index: int, request: Request) -> None:
        self.waiting.append((index, request))

    def cancel(self, index: int) -> bool:
        for i, (j, _) in enumerate(self.waiting):
            if j == index:
                del self.waiting[i]
                return True
        for row in self.rows:
            if row.index == index:
                self._release(row)
                return True
        return False

    def step(self) -> list[tuple[int, Request, ForcingState, _Seq]]:
        """Feed every sequence what it needs and let each one choose; returns the sequences that finished."""
        finished = self._admit()
        if not self.rows:
            return finished
        runs = self._plan()
        began = time.perf_counter()
        where = self.runtime.decode([(row.seq, row.position, row.pending[:n], n == len(row.pending)) for row, n in runs])
        rate = sum(n for _, n in runs) / max(time.perf_counter() - began, 1e-6)
        self.rate = rate if self.rate is None else 0.5 * (self.rate + rate)
        for (row, n), at in zip(runs, where):
            row.position += n
            del row.pending[:n]
            if at is not None:
                finished += self._choose(row, self.runtime.logits(at))
        return finished

    def _admit(self) -> list:
        finished = []
        while self.free and self.waiting:
            index, request = self.waiting.popleft()
            ids, sampling = request.prompt_token_ids, request.sampling
            seq = max(self.free, key=lambda s: self.runtime.shared(s, ids))  # the stream holding most of this prompt
            self.free.remove(seq)
            keep = self.runtime.reuse(seq, ids)
            row = _Seq(index, request, new_state(request, self.format_tokens),
                       None if sampling.greedy else np.random.default_rng(sampling.seed), seq,
                       pending=list(ids[keep:]), position=keep)
            self.rows.append(row)
            finished += self._force(row)
        return finished

    def _plan(self) -> list[tuple[_Seq, int]]:
        """How many pending tokens each sequence feeds this step: sequences past their prompt first (a
        token, or a forced run), then joining prompts in arrival order, chunked to what is left of
        BATCH_TOKENS, or while others decode, of the tokens that fit in STEP_SECONDS at the measured rate."""
        joining = lambda r: r.position < len(r.request.prompt_token_ids)  # noqa: E731
        runs, room = [], BATCH_TOKENS
        for row in sorted(self.rows, key=joining):
            if runs and joining(row) and not joining(runs[-1][0]) and self.rate is not None:
                used = BATCH_TOKENS - room
                room = min(room, max(MIN_CHUNK, int(self.rate * STEP_SECONDS) - used))
            n = min(len(row.pending), room)
            if n <= 0:
                break
            runs.append((row, n))
            room -= n
        return runs

    def _choose(self, row: _Seq, logits: np.ndarray) -> list:
        try:
            pick = _pick(logits, row.request.sampling, row.rng)
            token = row.state.next_token(lambda: pick)
            if token is not None:
                if self.on_token:
                    self.on_token(row.index, token, row.state)
                if not row.state.done:
                    row.pending.append(token)
        except Exception as exc:
            self.failed.append((row.index, exc))
            self._release(row)
            return []
        return self._force(row)

    def _force(self, row: _Seq) -> list:
        """Queue the run of tokens the state forces before the model's next choice; release a finished row."""
        try:
            while not row.state.done and not row.state.needs_sample():
                token = row.state.next_token(lambda: -1)  # never called: the state forces this token
                if token is None:
                    break
                if not row.state.done:
                    row.pending.append(token)
                if self.on_token:
                    self.on_token(row.index, token, row.state)
        except Exception as exc:
            self.failed.append((row.index, exc))
            self._release(row)
            return []
        if row.state.done:
            self._release(row)
            return [(row.index, row.request, row.state, row)]
        return []

    def _release(self, row: _Seq) -> None:
        """Take a row out of the batch; its stream keeps its cells for a later prompt with the same start."""
        self.rows.remove(row)
        self.free.append(row.seq)


class LlamaCppEngine:
    def __init__(self, runtime: Runtime, tokenizer, fmt: str | ThinkingFormat = "s1"):
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.fmt = get_format(fmt)
        self.format_tokens = FormatTokens.build(tokenizer, self.fmt)

    @classmethod
    def load(cls, name: str, fmt: str | ThinkingFormat = "s1", parallel: int = 1, ctx_size: int | None = None,
             threads: int | None = None) -> "LlamaCppEngine":
        """`parallel` sequences run at once; `ctx_size` is the KV cells of all of them together, as
        llama-server's --ctx-size with --parallel (default: 8192 per sequence, or the trained context)."""
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise UserError("The llamacpp engine needs llama-cpp-python; run `bash scripts/setup.sh --dev` (it compiles it once).") from None
        from transformers import AutoTokenizer

        source = resolve(name)
        if source.kind != "gguf":
            raise UserError(f"The llamacpp engine runs GGUF files; {name} is not one (use --engine hf for it).")
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

    def generate(
        self,
        requests: list[Request],
        batch_size: int = 8,
        on_token: OnToken | None = None,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]:
        return run_loop(self.loop(batch_size, on_token), requests, self.tokenizer, self.fmt, on_completion)

    def choose(self, prompt_ids: list[int], options: list[list[int]]) -> int:
        """The index of the option (token sequence) constrained greedy decoding writes after the prompt.

        The part of the prompt already in sequence 0's cells is kept (classification prompts share a long
        list of labels), so only the new tail is evaluated. Not to be called while a `loop` is running."""
        from .sampling import choose_option

        runtime = self.runtime
        last = {}

        def feed(tokens: list[int]) -> None:
            for start in range(0, len(tokens), BATCH_TOKENS):
                chunk = tokens[start : start + BATCH_TOKENS]
                [last["at"]] = runtime.decode([(0, len(runtime.held[0]), chunk, True)])

        feed(prompt_ids[runtime.reuse(0, prompt_ids):])
        choice = choose_option(options, lambda: runtime.logits(last["at"]), lambda token: feed([token]))
        runtime.forget(0, len(prompt_ids))
        return choice
