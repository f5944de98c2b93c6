"""The re-prefill loop: s1's original way of budget forcing, for engines that cannot force in flight.

Generate with the end-of-thinking tokens as stop tokens, strip the stop, append an extension (or the
forced end), and resubmit prompt + output as token ids. It needs nothing from a backend but "continue
these token ids for at most N tokens, stopping at these ids", so it runs against any server; it is
also the reference the in-flight engines are tested against, which is why it is written from the
semantics in DESIGN.md directly and shares no control flow with `forcing.ForcingState`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, Protocol

import torch

from ..forcing import ForcingState, Phase
from ..formats import FormatTokens, ThinkingFormat, get_format
from ..models import load_hf
from .base import Completion, OnCompletion, OnToken, Request, Sampling, new_state, to_completion


@dataclass
class Call:
    """One backend call: continue `token_ids` for at most `max_tokens`, stopping after any of `stop_ids`."""

    token_ids: list[int]
    max_tokens: int
    stop_ids: frozenset[int]
    sampling: Sampling


class Backend(Protocol):
    def complete(self, calls: list[Call]) -> list[list[int]]:
        """New tokens per call, the stop token included when one ended it."""


def forcing_rounds(request: Request, tokens: FormatTokens, record: ForcingState) -> Generator[Call, list[int], ForcingState]:
    """One sequence's rounds: yields backend calls, receives their tokens, fills in `record`.

    `record.output` grows after every round, so a caller can stream a sequence round by round.
    """
    forcing = request.forcing
    out = record.output
    thinking = used = 0
    while True:
        remaining = request.cap - thinking
        if remaining <= 0:
            last = out[-1] if out else request.prompt_token_ids[-1]
            record.thinking_end, record.capped = len(out), True
            out += tokens.forced_end(forcing.answer_prefix, tokens.ends_with_newline(last))
            break
        new = yield Call(request.prompt_token_ids + out, remaining, tokens.end_trigger_ids, request.sampling)
        stop = new.pop() if new and new[-1] in tokens.end_trigger_ids else None
        out += new
        thinking += len(new)
        if stop is None:
            continue
        if used < forcing.num_ignore or thinking < forcing.min_thinking_tokens:
            extension = tokens.extension(forcing.extensions[used % len(forcing.extensions)])
            used += 1
            taken = extension[: request.cap - thinking]
            out += taken
            thinking += len(taken)
            continue
        keep, rest = tokens.natural_end(stop)
        record.thinking_end = len(out)
        out += ([stop] if keep else []) + list(rest)
        break
    answer = yield Call(request.prompt_token_ids + out, forcing.max_answer_tokens, tokens.answer_stop_ids, request.sampling)
    out += answer
    record.thinking_tokens, record.extensions_used = thinking, used
    record.answer_tokens = len(answer)
    record.phase = Phase.DONE
    record.finish_reason = "stop" if answer and answer[-1] in tokens.answer_stop_ids else "length"
    return record


def run_rounds(
    requests: list[Request], tokens: FormatTokens, backend: Backend, batch_size: int,
    on_round: Callable[[int, ForcingState], None] | None = None,
) -> list[ForcingState]:
    """Drive many sequences' rounds together, `batch_size` at a time, one backend call per round."""
    # new_state only makes the record that the rounds fill in; no ForcingState logic runs here.
    records = [new_state(r, tokens) for r in requests]
    for start in range(0, len(requests), batch_size):
        live = {}
        calls = {}
        for i in range(start, min(start + batch_size, len(requests))):
            live[i] = forcing_rounds(requests[i], tokens, records[i])
            calls[i] = next(live[i])
        while calls:
            order = list(calls)
            outputs = backend.complete([calls[i] for i in order])
            calls = {}
            for i, new in zip(order, outputs):
                try:
                    calls[i] = live[i].send(list(new))
                except StopIteration:
                    pass
                if on_round:
                    on_round(i, records[i])
    return records


class HFBackend:
    """`Backend` on plain `transformers.generate`: the re-prefill loop exactly as a user would write it."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device

    def complete(self, calls: list[Call]) -> list[list[int]]:
        """One padded `generate` per group of calls that share stop ids and sampling settings."""
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(calls):
            groups.setdefault((c.stop_ids, c.sampling), []).append(i)
        results: list[list[int]] = [[] for _ in calls]
        for members in groups.values():
            for i, row in zip(members, self._generate([calls[i] for i in members])):
                results[i] = row
        return results

    @torch.inference_mode()
    def _generate(self, calls: list[Call]) -> list[list[int]]:
        width = max(len(c.token_ids) for c in calls)
        ids = torch.zeros((len(calls), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, c in enumerate(calls):
            ids[i, width - len(c.token_ids):] = torch.tensor(c.token_ids)
            mask[i, width - len(c.token_ids):] = 1
        sampling, stops = calls[0].sampling, sorted(calls[0].stop_ids)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            max_new_tokens=max(c.max_tokens for c in calls),
            eos_token_id=stops,
            pad_token_id=stops[0],
            do_sample=not sampling.greedy,
            temperature=None if sampling.greedy else sampling.temperature,
            top_p=None if sampling.greedy else sampling.top_p,
            top_k=None,
        )
        results = []
        for c, row in zip(calls, out[:, width:].tolist()):
            row = row[: c.max_tokens]
            for j, t in enumerate(row):
                if t in c.stop_ids:
                    row = row[: j + 1]
                    break
            results.append(row)
        return results


class ReprefillEngine:
    """Budget forcing through the re-prefill loop on any `Backend` (local transformers by default)."""

    def __init__(self, backend: Backend, tokenizer, fmt: str | ThinkingFormat = "s1", context_length: int = 4096):
        self.backend = backend
        self.tokenizer = tokenizer
        self.fmt = get_format(fmt)
        self.format_tokens = FormatTokens.build(tokenizer, self.fmt)
        self._context_length = context_length

    @classmethod
    def load(cls, name: str, fmt: str | ThinkingFormat = "s1", device: str = "auto", dtype: str = "auto") -> "ReprefillEngine":
        model, tokenizer = load_hf(name, device=device, dtype=dtype)
        return cls.from_model(model, tokenizer, fmt)

    @classmethod
    def from_model(cls, model, tokenizer, fmt: str | ThinkingFormat = "s1") -> "ReprefillEngine":
        context = int(getattr(model.config, "max_position_embeddings", None) or 4096)
        return cls(HFBackend(model, tokenizer), tokenizer, fmt, context)

    @property
    def context_length(self) -> int:
        return self._context_length

    def generate(
        self,
        requests: list[Request],
        batch_size: int = 8,
        on_token: OnToken | None = None,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]:
        sent = [0] * len(requests)
        completions: dict[int, Completion] = {}

        def on_round(i: int, state: ForcingState) -> None:
            """Hand on what this round added; finish the sequence if it is done."""
            if on_token:
                for token in state.output[sent[i] :]:
                    on_token(i, token, state)
            sent[i] = len(state.output)
            if state.done:
                completions[i] = to_completion(requests[i], state, self.tokenizer, self.fmt)
                if on_completion:
                    on_completion(i, completions[i])

        run_rounds(requests, self.format_tokens, self.backend, batch_size, on_round)
        return [completions[i] for i in range(len(requests))]
