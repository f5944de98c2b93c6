"""transformers engine: budget forcing in flight over a KV cache written in place, with continuous batching.

The shared `batching.BatchLoop` decides what each step feeds; `HFRuntime.forward` feeds it in one
forward of the model as a packed ragged batch — every row's tokens side by side in one sequence,
each with its own positions — the way vLLM batches: a decoding row adds one token, a forced run all
its tokens, a joining prompt a chunk. No row is padded to another's length and nothing is
concatenated: each row's keys and values go straight into that row's own buffers (grown by doubling,
so a row that outgrows them copies only itself), a joining or leaving row touches no other, and a
small attention function of ours attends each row's queries to that row's cache alone. It is
registered with transformers' `AttentionInterface` and switched on only for these forwards, so the
same model object keeps its own attention everywhere else (which is why the model must not be run from
another thread while a loop steps).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer

from s1.core.errors import UserError
from s1.core.formats import FormatTokens, ThinkingFormat, get_format
from s1.core.models import load_hf
from s1.engines.base import OnToken
from s1.engines.batching import BatchLoop, LoopEngine
from s1.engines.onednn import OneDNNLinears
from s1.engines.threads import ThreadTuner

# transformers 5.x renames the forward argument `past_key_values` to `cache` and warns on every call; the
# old name works across the whole supported range (>=5.23), so the rename waits for that floor to move.
warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)

ATTENTION = "s1_rows"
FIRST_CAPACITY = 256


class RowCache:
    """One sequence's keys and values, per layer [kv heads, capacity, head dim], written in place, and the
    tokens they hold."""

    def __init__(self):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.tokens: list[int] = []
        self.logits: torch.Tensor | None = None
        """The logits after the last token, kept when a paused row leaves its cache to be forked."""

    def prefix(self, n: int) -> RowCache:
        """A new cache holding a copy of this one's first n tokens (a child forking its parent's prefix)."""
        out = RowCache()
        capacity = max(FIRST_CAPACITY, 2 * n)
        for source, target in ((self.keys, out.keys), (self.values, out.values)):
            for layer in source:
                target.append(layer.new_empty(layer.shape[0], capacity, layer.shape[2]))
                target[-1][:, :n] = layer[:, :n]
        out.tokens = self.tokens[:n]
        return out

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def write(self, layer: int, start: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        end = start + keys.shape[1]
        if layer == len(self.keys):
            capacity = max(FIRST_CAPACITY, 2 * end)
            self.keys.append(keys.new_empty(keys.shape[0], capacity, keys.shape[2]))
            self.values.append(values.new_empty(values.shape[0], capacity, values.shape[2]))
        elif end > self.keys[layer].shape[1]:  # grow this row alone, by doubling
            for buffers in (self.keys, self.values):
                old = buffers[layer]
                buffers[layer] = old.new_empty(old.shape[0], max(2 * old.shape[1], end), old.shape[2])
                buffers[layer][:, : old.shape[1]] = old
        self.keys[layer][:, start:end] = keys
        self.values[layer][:, start:end] = values


class _Segments:
    """What the model's attention layers see as their cache during one packed forward: `update` writes
    each row's new keys and values into its `RowCache`; the attention function reads them back."""

    is_compileable = False

    def __init__(self, segments: list[tuple[RowCache, int, int, int]]):
        self.segments = segments
        """(row cache, first position, tokens, offset in the packed sequence)."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        for row, start, n, offset in self.segments:
            row.write(layer_idx, start, key_states[0, :, offset : offset + n], value_states[0, :, offset : offset + n])
        return key_states, value_states


def _row_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Each row's queries attend to that row's cache only: causal within a run, everything before it."""
    layer, (_, heads, total, dim) = module.layer_idx, query.shape
    out = query.new_empty(1, total, heads, dim)
    for row, start, n, offset in kwargs["s1_segments"].segments:
        keys, values = row.keys[layer][:, : start + n], row.values[layer][:, : start + n]
        groups = heads // keys.shape[0]  # query heads sharing one key/value head (GQA)
        q = query[0, :, offset : offset + n].reshape(keys.shape[0], groups * n, dim)
        if n == 1:  # a decoding row: two small matmuls, without SDPA's dispatch around them
            scores = torch.bmm(q, keys.transpose(1, 2)).mul_(scaling).softmax(-1, dtype=torch.float32)
            o = torch.bmm(scores.to(values.dtype), values)
        else:
            causal = torch.arange(start + n, device=q.device) <= torch.arange(
                start, start + n, device=q.device
            ).unsqueeze(1)
            # 4-D, so torch takes its fused (flash) kernel: three times faster than the 3-D path on long prompts
            o = F.scaled_dot_product_attention(
                q[None], keys[None], values[None], attn_mask=causal.repeat(groups, 1)[None, None], scale=scaling
            )[0]
        out[0, offset : offset + n] = o.reshape(heads, n, dim).transpose(0, 1)
    return out, None


AttentionInterface.register(ATTENTION, _row_attention)


HELD_BYTES = 2 << 30
"""Caches of paused rows kept for forking, all together, before the least recently used are dropped."""


class PausedCaches:
    """The caches paused rows left behind (a search node's trajectory so far), kept on the engine across
    loops so the node's children fork its prefix instead of processing it again. Only paused rows leave
    caches here, only a search's requests fork them, and a finished search drops them (`forget_paused`)."""

    def __init__(self, max_bytes: int = HELD_BYTES):
        self.max_bytes = max_bytes
        self.caches: OrderedDict[int, RowCache] = OrderedDict()
        self.lock = threading.Lock()

    def put(self, cache: RowCache, logits: torch.Tensor) -> None:
        if self.max_bytes <= 0:  # forking switched off: children process their whole context again
            return
        cache.logits = logits
        with self.lock:
            self.caches[id(cache)] = cache
            total = sum(c.nbytes for c in self.caches.values())
            while total > self.max_bytes and len(self.caches) > 1:
                total -= self.caches.popitem(last=False)[1].nbytes

    def clear(self) -> None:
        with self.lock:
            self.caches.clear()

    def fork(self, ids: list[int]) -> tuple[RowCache, int, torch.Tensor | None]:
        """A cache for `ids` holding the longest prefix any kept cache shares with them, how many tokens that
        is, and the logits after them when it holds all of `ids` (else the last token is left to feed)."""
        with self.lock:
            best, shared, whole = None, 0, False
            for cache in self.caches.values():
                n = len(os.path.commonprefix([cache.tokens, ids]))
                ends = n == len(cache.tokens)  # a cache ending where `ids` share it also holds the next logits
                if (n, ends) > (shared, whole):
                    best, shared, whole = cache, n, ends
            if best is None:
                return RowCache(), 0, None
            self.caches.move_to_end(id(best))
        if shared == len(ids) == len(best.tokens):
            return best.prefix(shared), shared, best.logits
        shared = min(shared, len(ids) - 1)
        return best.prefix(shared), shared, None


class HFRuntime:
    """Rows of a transformers causal LM, each with its own `RowCache` (see `batching` for the interface)."""

    slots = 1 << 20  # as many rows as the loop's max_batch asks for

    def __init__(
        self, model, linears: OneDNNLinears, tuner: ThreadTuner | None = None, paused: PausedCaches | None = None
    ):
        self.model = model
        self.device = next(model.parameters()).device
        self.vocab_size = int(model.get_input_embeddings().num_embeddings)
        self.rows: dict[int, RowCache] = {}
        self.tuner = tuner
        self.paused = paused if paused is not None else PausedCaches()
        self.linears = linears
        linears.prepare()

    def acquire(
        self, free: list[int], ids: list[int], reuse: bool = True, fork: bool = False
    ) -> tuple[int, int, torch.Tensor | None]:
        """A new row's cache: forked from a paused one for a search's request, else empty (other requests are
        computed from scratch, so their results never depend on what a search left behind)."""
        cache, kept, logits = self.paused.fork(ids) if reuse and fork else (RowCache(), 0, None)
        self.rows[free[0]] = cache
        return free[0], kept, logits

    def fork(self, source: int, slot: int, n: int) -> None:
        """Give `slot` a copy of the first n tokens of a running row's cache (a shared sweep's branch)."""
        self.rows[slot] = self.rows[source].prefix(n)

    def release(self, slot: int, logits: torch.Tensor | None = None) -> None:
        cache = self.rows.pop(slot, None)
        if cache is not None and logits is not None:
            self.paused.put(cache, logits)

    def rewind(self, slot: int, n: int) -> None:
        """Keep the slot's first n tokens: the next forward writes over the rest (attention reads up to it)."""
        del self.rows[slot].tokens[n:]

    def forward(self, runs: list[tuple[int, int, list[int], int]]) -> list[torch.Tensor | None]:
        if self.tuner is None:
            return self._forward(runs)
        return self.tuner.run(lambda: (self._forward(runs), sum(len(tokens) for _, _, tokens, _ in runs)))

    @torch.inference_mode()
    def _forward(self, runs: list[tuple[int, int, list[int], int]]) -> list[torch.Tensor | None]:
        ids, positions, segments, keep, spans = [], [], [], [], []
        for slot, start, tokens, want in runs:
            offset = len(ids)
            row = self.rows[slot]
            segments.append((row, start, len(tokens), offset))
            row.tokens[start:] = tokens
            ids += tokens
            positions += range(start, start + len(tokens))
            first = len(keep)
            keep += [] if want == 0 else [len(ids) - 1] if want == 1 else range(offset, len(ids))
            spans.append((first, len(keep), want))
        cache, config = _Segments(segments), self.model.config
        own = config._attn_implementation
        config._attn_implementation = ATTENTION
        try:
            with self.linears.active():
                out = self.model(
                    input_ids=torch.tensor([ids], device=self.device),
                    position_ids=torch.tensor([positions], device=self.device),
                    past_key_values=cache,
                    use_cache=True,
                    s1_segments=cache,
                    logits_to_keep=torch.tensor(keep or [len(ids) - 1], device=self.device),
                )
        finally:
            config._attn_implementation = own
        logits = out.logits[0]
        return [None if want == 0 else logits[a] if want == 1 else logits[a:b] for a, b, want in spans]


class HFEngine(LoopEngine):
    """Budget-forced generation on any transformers causal LM."""

    def __init__(self, model, tokenizer, fmt: str | ThinkingFormat = "s1", threads: int | None = None):
        self.model = model
        self.tuner = None
        """Chooses torch's CPU thread count as the engine runs, unless `threads` fixes it (see `threads`)."""
        if next(model.parameters()).device.type == "cpu":
            if threads:
                torch.set_num_threads(threads)
            else:
                self.tuner = ThreadTuner.for_this_machine()
        self.tokenizer = tokenizer
        self.fmt = get_format(fmt)
        self.format_tokens = FormatTokens.build(tokenizer, self.fmt)
        self.paused = PausedCaches()
        """Paused search nodes' caches, shared by this engine's loops (`PausedCaches`)."""
        self.linears = OneDNNLinears.for_model(model)
        """The linear layers the loops' forwards run through oneDNN on CPU, with their packed weights."""
        _check_plain_cache(model)

    @classmethod
    def load(
        cls,
        name: str,
        fmt: str | ThinkingFormat = "s1",
        device: str = "auto",
        dtype: str = "auto",
        threads: int | None = None,
    ) -> HFEngine:
        model, tokenizer = load_hf(name, device=device, dtype=dtype)
        return cls(model, tokenizer, fmt, threads)

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", None) or 4096)

    @torch.no_grad()
    def choose(self, prompt_ids: list[int], options: list[list[int]]) -> int:
        """The index of the option (token sequence) constrained greedy decoding writes after the prompt."""
        from s1.engines.sampling import choose_option

        device = self.model.device
        step = {"out": self.model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)}

        def feed(token: int) -> None:
            step["out"] = self.model(
                input_ids=torch.tensor([[token]], device=device),
                past_key_values=step["out"].past_key_values,
                use_cache=True,
            )

        return choose_option(options, lambda: step["out"].logits[0, -1], feed)

    def forget_paused(self) -> None:
        self.paused.clear()

    def loop(self, max_batch: int = 8, on_token: OnToken | None = None) -> BatchLoop:
        return BatchLoop(
            HFRuntime(self.model, self.linears, self.tuner, self.paused), self.format_tokens, max_batch, on_token
        )


def _check_plain_cache(model) -> None:
    """The loop's attention is plain full causal attention over each row's whole cache; refuse other kinds.

    Sliding-window and hybrid models (Gemma-2/3, Mistral with a window, GPT-OSS, linear-attention
    hybrids) attend to part of each sequence or keep recurrent state, which `_row_attention` would
    silently get wrong.
    """
    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:
        return
    kinds = {type(layer).__name__ for layer in layers if type(layer) is not DynamicLayer}
    if kinds:
        raise UserError(
            f"This model's cache is not plain full attention ({', '.join(sorted(kinds))}: a sliding window or a "
            "hybrid), which the hf engine's in-flight batching does not compute; use --engine reprefill "
            "(transformers.generate) or --engine llamacpp with a GGUF file, or --engine remote against vLLM."
        )
