"""The re-prefill driver: budget forcing for backends that cannot force in flight.

Each round is one backend call: "continue these token ids for at most N tokens, stopping after any of
these ids". The driver hands what came back to the sequence's `ForcingState`, which alone decides what
happens next (an extension, the end delimiter, the answer), appends what it forces, and asks for the
next round. That is s1's original loop (generate with stop tokens, append "Wait", resubmit token ids)
with the decisions made in the same place as in the in-flight engines. It needs nothing else from a
backend, so it runs against any server (the remote engine, the proxy) and on plain
`transformers.generate` (the reference engine). The tests hold both drivers to an independent literal
port of s1's script.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from s1.core.forcing import Branch, ForcingState
from s1.core.formats import FormatTokens, ThinkingFormat, get_format
from s1.core.models import load_hf
from s1.core.sampling import Sampling, derive_seed
from s1.engines.base import Completion, OnCompletion, OnToken, Request, new_state, to_completion
from s1.engines.sampling import Penalties

_sequence_ids = itertools.count()


@dataclass(eq=False)
class Sequence:
    """What a backend may keep about one sequence across its rounds.

    A remote backend pins the sequence to one server (so its prefix cache makes each round cheap); the
    transformers backend keeps an unseeded sequence's own random state (so rounds do not replay one stream).
    """

    id: int = field(default_factory=lambda: next(_sequence_ids))
    server: str | None = None
    rng_state: torch.Tensor | None = None
    affinity: str | None = None
    """Sequences with the same affinity (a search's nodes) go to the same server, whose prefix cache then
    holds what they share (`Request.affinity`)."""
    sent: int = 0
    """Prompt tokens sent over all rounds: what the backend processed, at most (a server's prefix cache
    may have served part of it)."""
    before: int = 0
    """A shared sweep's branch: prompt tokens the trajectory it followed sent before it forked off, which
    its setting run alone sends too (those rounds are its own rounds alone)."""
    shared: int = 0
    """A shared sweep's branch: leading output tokens it took over from that trajectory."""


@dataclass
class Call:
    """One backend call: continue `token_ids` for at most `max_tokens`, stopping after any of `stop_ids`."""

    token_ids: list[int]
    max_tokens: int
    stop_ids: frozenset[int]
    sampling: Sampling
    sequence: Sequence = field(default_factory=Sequence)
    banned: frozenset[int] = frozenset()
    """Ids the first new token may not be (vLLM's `min_tokens=1` over the stop ids): an ignored end of
    thinking whose extension is empty is suppressed, not replaced (`ForcingState.banned`)."""
    prompt_length: int = 0
    """How many of `token_ids` are the request's prompt (the rest is its output so far), for the presence and
    frequency penalties, which count output tokens only."""


class Backend(Protocol):
    def complete(self, calls: list[Call]) -> list[list[int]]:
        """New tokens per call, the stop token included when one ended it."""

    @property
    def shares_rounds(self) -> bool:
        """Whether a round's first n tokens are the same for any max_tokens >= n, token for token: what a
        shared sweep's branch needs to make its setting's own calls (`run_rounds`)."""


class NoProgress(RuntimeError):
    """A backend returned nothing for a round that asked for tokens: asking again would loop forever."""


def forcing_rounds(
    request: Request,
    state: ForcingState,
    sequence: Sequence | None = None,
    text: Callable[[list[int]], str] | None = None,
) -> Generator[Call, list[int], ForcingState]:
    """One sequence's rounds: yields backend calls, receives their tokens, and lets `state` decide.

    `state.output` grows after every round, so a caller can stream a sequence round by round. A request
    with a `step` rule ends when its step does (the state not done: paused); its rounds are bounded by
    the step's tokens and what a round wrote past the step's end is dropped (`text` decodes, for the
    delimiter).
    """
    sequence = sequence or Sequence(affinity=request.affinity)
    step, since = request.step, len(state.output)
    state.forced()
    while not state.done and not (step and step.ended(state, since, text)):
        budget, stops = state.round()
        if step and state.thinking:
            budget = min(budget, max(step.max_tokens - (len(state.output) - since), 1))
        call = Call(
            request.prompt_token_ids + state.output,
            budget,
            stops,
            round_sampling(request.sampling, len(state.output)),
            sequence,
            state.banned,
            len(request.prompt_token_ids),
        )
        sequence.sent += len(call.token_ids)
        new = yield call
        if not new:
            raise NoProgress(
                f"the backend returned no tokens for a round that allowed {budget}; the server may have run out "
                "of context or ignored the request"
            )
        if step:  # token by token, checked as the in-flight loop checks: after the token and what it forces
            for token in new:
                phase, at = state.phase, len(state.output)
                if not state.feed([token]):
                    break
                # the backend's next tokens no longer follow: the token was replaced, changed the phase, or
                # completed an end string whose start the state took back (the output is shorter than before)
                replaced = state.phase is not phase or len(state.output) <= at or state.output[at] != token
                state.forced()
                if replaced or step.ended(state, since, text):
                    break
        else:
            state.feed(list(new))
        state.forced()
    return state


def round_sampling(sampling: Sampling, at: int) -> Sampling:
    """The sampling a round starting at output position `at` sends: a seeded request's round draws from a
    stream seeded by the request's seed and `at` (`derive_seed`), started afresh each call as a server
    starts a seeded request's stream. What a round draws then depends only on what it sends (the tokens so
    far, the seed, the settings), never on rounds before it or how many tokens it may write: the first n
    tokens of a round are the same for any max_tokens >= n. That is what lets a seeded sweep share."""
    if sampling.greedy or sampling.seed is None or not at:
        return sampling
    return replace(sampling, seed=derive_seed(sampling.seed, at=at))


def run_rounds(
    requests: list[Request],
    tokens: FormatTokens,
    backend: Backend,
    batch_size: int,
    on_round: Callable[[int, ForcingState, bool, Sequence], None] | None = None,
) -> list[ForcingState]:
    """Drive many sequences' rounds together, `batch_size` at a time, one backend call per round.
    `on_round(i, state, ended, sequence)` follows every round of sequence i; `ended` once it has no more
    (done, or paused after a step), with `sequence.sent` the prompt tokens its calls sent.

    A request that follows another (`Request.follows`, a shared budget sweep) makes no calls of its own
    until its budget parts from the trajectory it follows; from there it goes on as a continuation of that
    trajectory (prompt + the shared output, which a server's prefix cache already holds). It parts either
    where a round of the trajectory ended (an end of thinking it accepts) or where its own cap ends its
    round early; either way its setting run alone ends a round at that very token, so the calls it makes
    from there are the calls that run makes. Greedy, that is the same output. Seeded, too: a round's stream
    follows from what the call sends (`round_sampling`), not from earlier rounds, and the trajectory's
    round drew its first tokens as the shorter round alone draws them (a backend whose seeded stream
    depended on max_tokens would break this; vLLM, llama.cpp's server, `s1 serve` and `HFBackend` draw
    token by token). Unseeded, a branch continues with fresh randomness: a sample drawn as alone would be,
    token by token, not the same one (there is none to be the same as)."""
    exact = getattr(backend, "shares_rounds", True)
    # Without exact rounds (a text-mode server), a branch may still follow where it can part only at the end
    # of a round (an end of thinking it accepts), never inside one cut at its own cap: its cap is the trunk's.
    shared = {
        i for i, r in enumerate(requests) if r.follows is not None and (exact or r.cap == requests[r.follows].cap)
    }
    records = [
        None if i in shared else r.resume.fork() if r.resume is not None else new_state(r, tokens)
        for i, r in enumerate(requests)
    ]
    sequences = [Sequence(affinity=r.affinity) for r in requests]
    for i in shared:
        trunk, request = records[requests[i].follows], requests[i]
        trunk.branches.append(Branch(i, request.forcing, request.cap))
    for state in {id(s): s for s in records if s is not None and s.branches}.values():
        state.follow(state.branches)  # a cap already reached (0) leaves before the first round
    own = [i for i in range(len(requests)) if i not in shared]
    for start in range(0, len(own), batch_size):
        live = {}
        calls = {}

        def begin(i: int) -> None:
            live[i] = forcing_rounds(requests[i], records[i], sequences[i], tokens.text)
            try:
                calls[i] = next(live[i])
            except StopIteration:  # nothing to ask a backend (a search's root, paused before its first token)
                branch_off(i)
                if on_round:
                    on_round(i, records[i], True, sequences[i])
                return
            branch_off(i)  # a cap the prompt already reaches (0)

        def branch_off(i: int) -> None:
            """Start the branches that left sequence i's trajectory; at its end, end those still following."""
            state = records[i]
            forks, state.forks = state.forks, []
            # the rounds sent so far, less the next one (already asked for): those a branch's setting alone sends
            before = sequences[i].sent - (len(calls[i].token_ids) if i in calls else 0)
            for key, fork in forks:
                records[key] = fork
                sequences[key].before = before
                sequences[key].shared = len(os.path.commonprefix([state.output, fork.output]))
                begin(key)
            if state.done:
                for branch in state.branches:
                    records[branch.key] = state.follower(branch)
                    sequences[branch.key].before = before
                    sequences[branch.key].shared = len(records[branch.key].output)
                    if on_round:
                        on_round(branch.key, records[branch.key], True, sequences[branch.key])
                state.branches = []

        for i in own[start : start + batch_size]:
            begin(i)
        while calls:
            order = list(calls)
            outputs = backend.complete([calls[i] for i in order])
            calls = {}
            for i, new in zip(order, outputs):
                ended = False
                try:
                    calls[i] = live[i].send(list(new))
                except StopIteration:
                    ended = True
                if records[i].done and i in calls:  # ended from outside (a stop string): no further round
                    sequences[i].sent -= len(calls.pop(i).token_ids)  # counted when asked for, never sent
                    live[i].close()
                    ended = True
                branch_off(i)
                if on_round:
                    on_round(i, records[i], ended, sequences[i])
    return records


class HFBackend:
    """`Backend` on plain `transformers.generate`: the re-prefill loop exactly as a user would write it.

    Generation settings are neutral (nothing inherited from the checkpoint's `generation_config`, such
    as a repetition penalty, which the in-flight engines do not apply either). A seeded call draws from
    a stream seeded by the seed it sends, as a server's seeded request does (the driver sends each round
    its own, `round_sampling`); an unseeded sequence draws from its own random stream, continued across
    its rounds.
    """

    shares_rounds = True

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device

    def complete(self, calls: list[Call]) -> list[list[int]]:
        """Greedy calls that share stop ids run as one padded `generate`; sampled calls run one by one."""
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(calls):
            key = (c.stop_ids, c.banned) if c.sampling.greedy and not c.sampling.penalized else (c.stop_ids, i)
            groups.setdefault(key, []).append(i)
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
            ids[i, width - len(c.token_ids) :] = torch.tensor(c.token_ids)
            mask[i, width - len(c.token_ids) :] = 1
        sampling, stops = calls[0].sampling, sorted(calls[0].stop_ids)
        config = GenerationConfig(
            max_new_tokens=max(c.max_tokens for c in calls),
            eos_token_id=stops,
            pad_token_id=stops[0],
            min_new_tokens=1 if calls[0].banned else None,  # the banned ids are among the stops
            do_sample=not sampling.greedy,
            temperature=sampling.temperature if not sampling.greedy else 1.0,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 and not sampling.greedy else 0,
            min_p=sampling.min_p if sampling.min_p > 0 and not sampling.greedy else None,
        )
        # the penalties as the in-flight engines apply them (one function, engines/sampling.py); a penalized
        # call runs alone (see `complete`), so its row is the only one
        processors = LogitsProcessorList([_Penalize(calls[0], self.model)] if sampling.penalized else [])
        cuda = [self.device] if self.device.type == "cuda" else []
        get_state = (lambda: torch.cuda.get_rng_state(self.device)) if cuda else torch.get_rng_state
        set_state = (lambda s: torch.cuda.set_rng_state(s, self.device)) if cuda else torch.set_rng_state
        with _neutral_defaults(self.model), torch.random.fork_rng(devices=cuda):
            sequence = calls[0].sequence
            if sampling.seed is not None and not sampling.greedy:
                # as a server: each call's stream starts from the seed it sends (a seed per round,
                # `round_sampling`), so a branch of a shared sweep sends what its setting alone sends
                torch.manual_seed(sampling.seed)
            elif not sampling.greedy:
                if sequence.rng_state is None:
                    torch.manual_seed(torch.seed())
                    sequence.rng_state = get_state()
                set_state(sequence.rng_state)
            out = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                generation_config=config,
                logits_processor=processors,
            )
            if not sampling.greedy:
                sequence.rng_state = get_state()
        results = []
        for c, row in zip(calls, out[:, width:].tolist()):
            row = row[: c.max_tokens]
            for j, t in enumerate(row):
                if t in c.stop_ids:
                    row = row[: j + 1]
                    break
            results.append(row)
        return results


class _Penalize(LogitsProcessor):
    """vLLM's repetition, presence and frequency penalties (`Penalties`) inside `transformers.generate`."""

    def __init__(self, call: Call, model):
        vocab = int(model.get_input_embeddings().num_embeddings)
        self.prompt_length = call.prompt_length
        self.penalties = Penalties(call.sampling, call.token_ids[: call.prompt_length], vocab, model.device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        output = input_ids[0, self.prompt_length :].tolist()
        return self.penalties.apply(scores[0], output).to(scores.dtype).unsqueeze(0)


class _neutral_defaults:
    """Swap the model's `generation_config` for the library defaults while generating.

    transformers fills every setting left at its default from the checkpoint's own generation config,
    so passing neutral values is not enough to keep, say, its repetition penalty out.
    """

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = self.model.generation_config
        self.model.generation_config = GenerationConfig()

    def __exit__(self, *exc):
        self.model.generation_config = self.saved


class ReprefillEngine:
    """Budget forcing through the re-prefill loop on any `Backend` (local transformers by default)."""

    def __init__(self, backend: Backend, tokenizer, fmt: str | ThinkingFormat = "s1", context_length: int = 4096):
        self.backend = backend
        self.tokenizer = tokenizer
        self.fmt = get_format(fmt)
        self.format_tokens = FormatTokens.build(tokenizer, self.fmt)
        self._context_length = context_length

    @classmethod
    def load(
        cls, name: str, fmt: str | ThinkingFormat = "s1", device: str = "auto", dtype: str = "auto"
    ) -> ReprefillEngine:
        model, tokenizer = load_hf(name, device=device, dtype=dtype)
        if next(model.parameters()).device.type == "cpu":
            from s1.engines.threads import use_free_cores

            use_free_cores()  # transformers.generate on a shared machine: only the cores others leave free
        return cls.from_model(model, tokenizer, fmt)

    @classmethod
    def from_model(cls, model, tokenizer, fmt: str | ThinkingFormat = "s1") -> ReprefillEngine:
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

        def on_round(i: int, state: ForcingState, ended: bool, sequence: Sequence) -> None:
            """Hand on what this round added; finish the sequence if it is done (or paused after a step)."""
            if on_token:
                for token in state.output[sent[i] :]:
                    on_token(i, token, state)
            sent[i] = len(state.output)
            if ended and i not in completions:
                alone = sequence.sent + sequence.before if requests[i].follows is not None else None
                completions[i] = to_completion(
                    requests[i],
                    state,
                    self.tokenizer,
                    self.fmt,
                    prefill_tokens=sequence.sent,
                    shared_tokens=sequence.shared,
                    separate_prefill_tokens=alone,
                )
                if on_completion:
                    on_completion(i, completions[i])

        run_rounds(requests, self.format_tokens, self.backend, batch_size, on_round)
        return [completions[i] for i in range(len(requests))]
