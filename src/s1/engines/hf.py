"""transformers engine: an own batched decode loop over a KV cache with budget forcing in flight.

Every step feeds each live sequence exactly one token — sampled, or forced by its `ForcingState`
(an extension, the end delimiter, the answer prefix) — so forcing never re-processes a prompt and
no sequence waits for another. Sequences are rows of one left-padded cache: a finished row is
cut out at once, and a new request is prefilled on its own and spliced in beside the running rows,
which is what continuous batching in the server needs.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ..forcing import ForcingState
from ..errors import UserError
from ..formats import FormatTokens, ThinkingFormat, get_format
from ..models import load_hf
from .base import Completion, OnCompletion, OnToken, Request, new_state, run_loop
from .sampling import pick_tokens, row_generator

# transformers 5.x renames the forward argument `past_key_values` to `cache` and warns on every call; the
# old name works across the whole supported range (>=5.23), so the rename waits for that floor to move.
warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)


@dataclass
class _Row:
    index: int
    request: Request
    state: ForcingState
    generator: torch.Generator | None
    length: int
    """Real tokens of this sequence in the cache, which is also the position of its next token."""
    next_input: int | None = None
    logprobs: list | None = None
    prompt_logprobs: list | None = None


def _token_logprobs(logprobs: torch.Tensor, token: int, k: int) -> tuple[float, dict[int, float]]:
    """The chosen token's logprob and the k most likely tokens' (vLLM's and OpenAI's `logprobs`)."""
    top = {}
    if k:
        values, ids = logprobs.topk(k)
        top = dict(zip(ids.tolist(), values.tolist()))
    return float(logprobs[token]), top


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    if width == 0:
        return t
    shape = list(t.shape)
    shape[dim] = width
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class DecodeLoop:
    """A running batch. `add` queues a request; each `step` admits queued ones and advances all by one token."""

    def __init__(self, model, tokenizer, format_tokens: FormatTokens, max_batch: int = 8, on_token: OnToken | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.format_tokens = format_tokens
        self.max_batch = max_batch
        self.on_token = on_token
        self.device = next(model.parameters()).device
        self.rows: list[_Row] = []
        self.waiting: deque[tuple[int, Request]] = deque()
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, cached columns], 0 where left padding
        self.failed: list[tuple[int, Exception]] = []
        """Requests that failed on their own (a bad prefill, a sampling error): the caller reports
        each one and takes it off the list; the rest of the batch goes on."""

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.waiting)

    def add(self, index: int, request: Request) -> None:
        self.waiting.append((index, request))

    def cancel(self, index: int) -> bool:
        """Drop a request (a client went away); its slot is free at the next step."""
        for i, (j, _) in enumerate(self.waiting):
            if j == index:
                del self.waiting[i]
                return True
        keep = [i for i, row in enumerate(self.rows) if row.index != index]
        if len(keep) == len(self.rows):
            return False
        self._keep_rows(keep)
        return True

    @torch.inference_mode()
    def step(self) -> list[tuple[int, Request, ForcingState]]:
        """Advance every sequence by one token; returns the sequences that finished in this step."""
        finished = self._admit()
        if self.rows:
            logits = self._decode()
            finished += self._choose(self.rows, logits)
        return finished

    def _admit(self) -> list:
        """Prefill the requests that fit, together where possible; one that fails alone fails alone."""
        free = self.max_batch - len(self.rows)
        if free <= 0 or not self.waiting:
            return []
        joining = [self.waiting.popleft() for _ in range(min(free, len(self.waiting)))]
        scoring = [j for j in joining if j[1].prompt_logprobs is not None]
        groups = [[j for j in joining if j[1].prompt_logprobs is None]] + [[j] for j in scoring]
        finished = []
        for group in groups:
            if not group:
                continue
            try:
                finished += self._join(group)
            except Exception as exc:
                if len(group) == 1:
                    self.failed.append((group[0][0], exc))
                    continue
                for one in group:  # find the request that broke the joint prefill
                    try:
                        finished += self._join([one])
                    except Exception as single:
                        self.failed.append((one[0], single))
        return finished

    def _join(self, joining: list[tuple[int, Request]]) -> list:
        rows = [
            _Row(i, r, new_state(r, self.format_tokens), row_generator(r.sampling, self.device), len(r.prompt_token_ids),
                 logprobs=[] if r.logprobs is not None else None)
            for i, r in joining
        ]
        everything = any(r.request.prompt_logprobs is not None for r in rows)
        cache, mask, logits = self._prefill([r.request.prompt_token_ids for r in rows], keep_all=everything)
        if everything:
            [row] = rows
            row.prompt_logprobs = self._prompt_logprobs(row.request, logits[0])
            logits = logits[:, -1, :]
        self._splice(rows, cache, mask)
        start = len(self.rows) - len(rows)
        return self._choose(rows, logits, offset=start)

    def _prompt_logprobs(self, request: Request, logits: torch.Tensor) -> list:
        """Each prompt token's logprob given the tokens before it (None for the first), as `echo` needs."""
        ids = request.prompt_token_ids
        logprobs = logits.float().log_softmax(-1)
        return [None] + [_token_logprobs(logprobs[i - 1], ids[i], request.prompt_logprobs) for i in range(1, len(ids))]

    def _prefill(self, prompts: list[list[int]], keep_all: bool = False):
        width = max(len(p) for p in prompts)
        ids = torch.zeros((len(prompts), width), dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
            logits_to_keep=0 if keep_all else 1,
        )
        return out.past_key_values, mask, out.logits if keep_all else out.logits[:, -1, :]

    def _splice(self, rows: list[_Row], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Join freshly prefilled rows to the running batch, left-padding whichever side is shorter."""
        if self.cache is None:
            self.rows, self.cache, self.mask = rows, cache, mask
            return
        old, new = self.mask.shape[1], mask.shape[1]
        width = max(old, new)
        for mine, theirs in zip(self.cache.layers, cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, width - old, 2), _left_pad(theirs.keys, width - new, 2)])
            mine.values = torch.cat([_left_pad(mine.values, width - old, 2), _left_pad(theirs.values, width - new, 2)])
        self.mask = torch.cat([_left_pad(self.mask, width - old, 1), _left_pad(mask, width - new, 1)])
        self.rows = self.rows + rows

    def _decode(self) -> torch.Tensor:
        ids = torch.tensor([[r.next_input] for r in self.rows], device=self.device)
        positions = torch.tensor([[r.length] for r in self.rows], device=self.device)
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        out = self.model(
            input_ids=ids, attention_mask=self.mask, position_ids=positions, past_key_values=self.cache, use_cache=True
        )
        for r in self.rows:
            r.length += 1
        return out.logits[:, -1, :]

    def _choose(self, rows: list[_Row], logits: torch.Tensor, offset: int = 0) -> list:
        """Let each row's forcing state pick its next token; cut out the rows that finished or failed."""
        logits = self._mask_early_stops(rows, logits)
        try:
            picks = pick_tokens(logits, [r.request.sampling for r in rows], [r.generator for r in rows])
        except Exception:  # one row's settings broke the batched draw: draw row by row, fail that row alone
            picks = []
            for j, r in enumerate(rows):
                try:
                    picks.append(pick_tokens(logits[j : j + 1], [r.request.sampling], [r.generator])[0])
                except Exception as exc:
                    picks.append(exc)
        finished, drop = [], set()
        for j, (row, pick) in enumerate(zip(rows, picks)):
            try:
                if isinstance(pick, Exception):
                    raise pick
                token = row.state.next_token(lambda: pick)
                if token is not None and row.logprobs is not None:
                    row.logprobs.append(_token_logprobs(logits[j].float().log_softmax(-1), token, row.request.logprobs))
                if token is not None and self.on_token:
                    self.on_token(row.index, token, row.state)
            except Exception as exc:
                self.failed.append((row.index, exc))
                drop.add(offset + j)
                continue
            if row.state.done:
                finished.append((row.index, row.request, row.state, row))
                drop.add(offset + j)
            else:
                row.next_input = token
        if drop:
            self._keep_rows([i for i in range(len(self.rows)) if i not in drop])
        return finished

    @staticmethod
    def _mask_early_stops(rows: list[_Row], logits: torch.Tensor) -> torch.Tensor:
        """vLLM's `min_tokens`: an answer stop cannot be sampled before that many answer tokens."""
        early = [(j, r) for j, r in enumerate(rows) if r.request.min_tokens and r.state.answer_tokens < r.request.min_tokens
                 and r.state.needs_sample() and r.state.thinking_end is not None]
        if not early:
            return logits
        logits = logits.clone()
        for j, r in early:
            logits[j, sorted(r.state.answer_stop_ids)] = float("-inf")
        return logits

    def _keep_rows(self, keep: list[int]) -> None:
        if not keep:
            self.rows, self.cache, self.mask = [], None, None
            return
        self.rows = [self.rows[i] for i in keep]
        index = torch.tensor(keep, device=self.device)
        self.mask = self.mask.index_select(0, index)
        # Columns that are padding for every remaining row cost attention time for nothing.
        start = int((self.mask.sum(0) > 0).long().argmax())
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]


class HFEngine:
    """Budget-forced generation on any transformers causal LM."""

    def __init__(self, model, tokenizer, fmt: str | ThinkingFormat = "s1"):
        self.model = model
        self.tokenizer = tokenizer
        self.fmt = get_format(fmt)
        self.format_tokens = FormatTokens.build(tokenizer, self.fmt)
        _check_plain_cache(model)

    @classmethod
    def load(cls, name: str, fmt: str | ThinkingFormat = "s1", device: str = "auto", dtype: str = "auto") -> "HFEngine":
        model, tokenizer = load_hf(name, device=device, dtype=dtype)
        return cls(model, tokenizer, fmt)

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", None) or 4096)

    @torch.no_grad()
    def choose(self, prompt_ids: list[int], options: list[list[int]]) -> int:
        """The index of the option (token sequence) constrained greedy decoding writes after the prompt."""
        from .sampling import choose_option

        device = self.model.device
        step = {"out": self.model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)}

        def feed(token: int) -> None:
            step["out"] = self.model(input_ids=torch.tensor([[token]], device=device),
                                     past_key_values=step["out"].past_key_values, use_cache=True)

        return choose_option(options, lambda: step["out"].logits[0, -1], feed)

    def loop(self, max_batch: int = 8, on_token: OnToken | None = None) -> DecodeLoop:
        return DecodeLoop(self.model, self.tokenizer, self.format_tokens, max_batch, on_token)

    def generate(
        self,
        requests: list[Request],
        batch_size: int = 8,
        on_token: OnToken | None = None,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]:
        return run_loop(self.loop(batch_size, on_token), requests, self.tokenizer, self.fmt, on_completion)


def _check_plain_cache(model) -> None:
    """The decode loop splices and cuts rows of a plain full-attention cache; refuse any other kind.

    Sliding-window and hybrid caches (Gemma-2/3, Mistral with a window, GPT-OSS, linear-attention
    hybrids) keep only part of each sequence, so splicing would silently mix rows up.
    """
    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:
        return
    kinds = {type(layer).__name__ for layer in layers if type(layer) is not DynamicLayer}
    if kinds:
        raise UserError(
            f"This model's cache is not plain full attention ({', '.join(sorted(kinds))}: a sliding window or a "
            "hybrid), which the hf engine's in-flight batching cannot splice; use --engine reprefill "
            "(transformers.generate) or --engine llamacpp with a GGUF file, or --engine remote against vLLM."
        )
