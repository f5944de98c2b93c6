"""Continuous batching with budget forcing in flight, for every in-process engine.

A running batch is a set of rows, one per sequence, each holding the tokens it needs fed before the
model's next choice: its prompt (or what a reused prefix leaves of it), then its last sampled token
and any run of tokens its `ForcingState` forces after it (an extension, the end delimiter and answer
prefix). Each step feeds every row's pending tokens in one forward of the engine's runtime — decoding
rows first, then chunks of prompts still joining, sized so that the step lasts about STEP_SECONDS
while others decode — and lets each row whose tokens are all in choose its next one. A finished row
leaves at once and its slot goes to the next waiting request.

Runtimes (llama.cpp's KV streams, the transformers engine's per-row cache) provide:
- `slots`: how many rows they hold at most; `vocab_size`;
- `acquire(free, ids, reuse, fork) -> (slot, kept, logits)`: a free slot for a prompt, how many of its
  leading tokens the slot already holds (a prefix kept from the slot's last sequence, or, for a search's
  request (`fork`), copied from a paused one), and the logits after the last of them when it holds them
  all (else None);
- `forward(runs) -> logits`: runs of (slot, first position, tokens, want) with want 0 (no logits),
  1 (the last token's, shape [vocab]) or 2 (every token's, [len, vocab]);
- `release(slot, logits=None)`: a paused row's slot comes with its last logits, so the runtime may keep
  its cache for the rows that continue it.

One concern, so one module past 400 lines: the continuous-batching loop the in-process engines share.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, replace

import torch

from s1.core.forcing import Branch, ForcingState
from s1.core.formats import FormatTokens
from s1.engines.base import Completion, OnCompletion, OnToken, Request, new_state, to_completion
from s1.engines.sampling import Penalties, pick_tokens, row_generator

BATCH_TOKENS = 512
"""Tokens one step feeds at most, all rows together."""
STEP_SECONDS = 0.25
"""While rows are decoding, a joining prompt's chunk is sized so a step takes about this long: a long
prompt then delays each running row's next token by a fraction of a second, not by its whole prefill."""
SHORT_PROMPT = 128
"""A prompt this short joins whole, whatever the time budget: a burst of chat requests must not join a
few tokens a step (each costs little; it is a long prompt that would stall the others)."""
MIN_CHUNK = 16


@dataclass
class Row:
    index: int
    request: Request
    state: ForcingState
    generator: torch.Generator | None
    slot: int
    pending: list[int]
    """Tokens to feed before the model's next choice."""
    position: int
    """Tokens of this sequence the runtime already holds; the position of pending[0]."""
    logprobs: list | None = None
    """Per output token, when asked; None marks a forced token not scored yet (it is fed in a run with
    others, and scored from the logits of the token before it once that run is fed)."""
    prompt_logprobs: list | None = None
    unscored: int = 0
    last_logits: torch.Tensor | None = None
    context: int = 0
    """Tokens fed before this row generates: its prompt, and a resumed trajectory's output so far."""
    prefilled: int = 0
    """Of those, the ones this row feeds itself (the rest were held: a kept or forked prefix)."""
    since: int = 0
    """Where this row's step began in `state.output` (a search pauses rows after a step)."""
    pausing: bool = False
    """The step is over: feed what is pending, then pause the row, keeping its cache and last logits."""
    ready: torch.Tensor | None = None
    """Logits for the next choice, held with a forked prefix: the row chooses without a forward."""
    shared: int = 0
    """Leading output tokens taken over from the trajectory this row branched from (a shared sweep)."""
    alone: int | None = None
    """A branch's prompt tokens had its setting run alone: its prompt (None: what it processed)."""
    penalties: Penalties | None = None
    """The repetition, presence and frequency penalties' counts, for a request that sets one."""
    grammar: object | None = None
    """The answer's grammar (`structured.AnswerGrammar`), for a request that gives one."""

    @property
    def joining(self) -> bool:
        return self.position < self.context


def _copy_generator(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None:
        return None
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy


def token_logprobs(logprobs: torch.Tensor, token: int, k: int) -> tuple[float, dict[int, float]]:
    """The chosen token's logprob and the k most likely tokens' (vLLM's and OpenAI's `logprobs`)."""
    top = {}
    if k:
        values, ids = logprobs.topk(k)
        top = dict(zip(ids.tolist(), values.tolist()))
    return float(logprobs[token]), top


class LoopEngine:
    """`generate` for the engines whose `loop(max_batch, on_token)` returns a `BatchLoop`: every request
    queued at once, completions handed to `on_completion` as each finishes and returned in request order."""

    def forget_paused(self) -> None:
        """Drop what paused trajectories left for their continuations (a search over one problem is done)."""

    def generate(
        self,
        requests: list[Request],
        batch_size: int = 8,
        on_token: OnToken | None = None,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]:
        loop = self.loop(batch_size, on_token)
        for i, request in enumerate(requests):
            loop.add(i, request)
        results: dict[int, Completion] = {}
        while loop.busy:
            for i, request, state, row in loop.step():
                results[i] = to_completion(
                    request,
                    state,
                    self.tokenizer,
                    self.fmt,
                    row.logprobs,
                    row.prompt_logprobs,
                    prefill_tokens=row.prefilled,
                    shared_tokens=row.shared,
                    separate_prefill_tokens=row.alone,
                )
                if on_completion:
                    on_completion(i, results[i])
            if loop.failed:
                raise loop.failed[0][1]
        return [results[i] for i in range(len(requests))]


class BatchLoop:
    """A running batch. `add` queues a request; each `step` admits what fits and advances every row."""

    def __init__(self, runtime, format_tokens: FormatTokens, max_batch: int = 8, on_token: OnToken | None = None):
        self.runtime = runtime
        self.format_tokens = format_tokens
        self.max_batch = max(1, min(max_batch, runtime.slots))
        self.on_token = on_token
        self.rows: list[Row] = []
        self.waiting: deque[tuple[int, Request]] = deque()
        self.free = list(range(self.max_batch))
        self.failed: list[tuple[int, Exception]] = []
        """Requests that failed on their own (a token outside the vocabulary, a sampling error): the caller
        reports each one and takes it off the list; the rest of the batch goes on."""
        self.rate: float | None = None
        """Tokens per second the last steps fed (a running average), which sizes prompt chunks."""
        self.followers: dict[int, list[tuple[int, Request]]] = {}
        """A shared sweep's requests (`Request.follows`) by the index of the request they follow."""
        self.branching: dict[int, Request] = {}
        """Followers of an admitted row, by index, until they branch off or end with it."""
        self.carried: dict[int, torch.Generator | None] = {}
        """The random streams of branches waiting for a slot (they recompute their prefix, then go on)."""
        self.carried_shared: dict[int, int] = {}
        """What those branches took over from their trajectory (`Row.shared`): recomputed, not generated."""

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.waiting)

    def add(self, index: int, request: Request) -> None:
        if request.follows is not None:
            self.followers.setdefault(request.follows, []).append((index, request))
            return
        self.waiting.append((index, request))

    def cancel(self, index: int) -> bool:
        """Drop a request (a client went away); its slot is free at the next step."""
        for i, (j, _) in enumerate(self.waiting):
            if j == index:
                del self.waiting[i]
                return True
        for row in self.rows:
            if row.index == index:
                self._release(row)
                return True
        return False

    def step(self) -> list[tuple[int, Request, ForcingState, Row]]:
        """Feed every row what it needs and let each complete one choose; returns the rows that finished."""
        finished = self._admit()
        if not self.rows:
            return finished
        fed = []  # rows with everything fed, and the logits after it: held with a forked prefix, or computed now
        for row in [r for r in self.rows if r.ready is not None]:
            fed.append((row, row.ready))
            row.ready = None
        runs = self._plan()
        if runs:
            began = time.perf_counter()
            logits = self.runtime.forward(
                [(row.slot, row.position, row.pending[:n], self._want(row, n)) for row, n in runs]
            )
            rate = sum(n for _, n in runs) / max(time.perf_counter() - began, 1e-6)
            self.rate = rate if self.rate is None else 0.5 * (self.rate + rate)
            for (row, n), out in zip(runs, logits):
                out = self._advance(row, n, out)
                if not row.pending:
                    fed.append((row, out))
        choosing = []
        for row, out in fed:
            if row.pausing:
                finished.append(self._pause(row, out))
            else:
                choosing.append((row, out))
        if choosing:
            finished += self._choose([r for r, _ in choosing], torch.stack([o for _, o in choosing]))
        return finished

    def _admit(self) -> list:
        finished = []
        while self.free and self.waiting:
            index, request = self.waiting.popleft()
            ids, vocab = request.prompt_token_ids, self.runtime.vocab_size
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                self.failed.append((index, ValueError(f"token id {bad} is outside the vocabulary (0 to {vocab - 1})")))
                self._unfollow(index)
                continue
            scored = request.prompt_logprobs is not None
            try:
                if request.resume is not None and (scored or request.logprobs is not None):
                    raise ValueError("a resumed trajectory cannot return logprobs")
                state = request.resume.fork() if request.resume is not None else new_state(request, self.format_tokens)
                if index in self.carried:
                    generator = self.carried.pop(index)
                else:
                    generator = row_generator(request.sampling, getattr(self.runtime, "device", "cpu"))
                grammar = None
                if request.grammar is not None:
                    from s1.engines.structured import AnswerGrammar

                    grammar = AnswerGrammar(self.format_tokens.tokenizer, request.grammar)
                state.follow(self._followers(index, request))
            except Exception as exc:
                self.failed.append((index, exc))
                self._unfollow(index)
                continue
            context = list(ids) + state.output
            search = request.resume is not None or request.step is not None
            slot, kept, ready = self.runtime.acquire(self.free, context, reuse=not scored, fork=search)
            self.free.remove(slot)
            row = Row(
                index,
                request,
                state,
                generator,
                slot,
                pending=context[kept:],
                position=kept,
                logprobs=[] if request.logprobs is not None else None,
                prompt_logprobs=[None] if scored else None,
                context=len(context),
                prefilled=len(context) - kept,
                since=len(state.output),
                ready=ready,
                grammar=grammar,
            )
            if index in self.carried_shared:  # a branch that waited for a slot
                row.shared, row.alone = self.carried_shared.pop(index), len(ids)
            row.penalties = self._penalties(request)
            self.rows.append(row)
            finished += self._force(row)
            if row.pending:  # forced tokens come first; the held logits are not the ones after them
                row.ready = None
        return finished

    def _unfollow(self, index: int) -> None:
        """A request that fails at admission takes nobody down with it: the requests that were to follow its
        trajectory (a shared sweep) go on as requests of their own, with the same samples they would have had."""
        for i, other in self.followers.pop(index, []):
            self.waiting.append((i, replace(other, follows=None)))

    def _followers(self, index: int, request: Request) -> list[Branch]:
        """The branches of the requests that follow this one; each must differ from it only in a smaller or
        equal cap and Wait count (a follower that could not branch off where it differs would be wrong)."""
        out = []
        for i, other in self.followers.pop(index, []):
            base, mine = other.forcing, request.forcing
            if (
                other.prompt_token_ids != request.prompt_token_ids
                or other.sampling != request.sampling
                or other.cap > request.cap
                or base.num_ignore > mine.num_ignore
                or replace(base, max_thinking_tokens=None, num_ignore=0)
                != replace(mine, max_thinking_tokens=None, num_ignore=0)
                or other.plain
                or request.plain
                or other.logprobs is not None
                or request.logprobs is not None
                or request.step is not None
                or request.resume is not None
            ):
                raise ValueError(f"request {i} cannot follow request {index}: only its cap and Wait count may be lower")
            self.branching[i] = other
            out.append(Branch(i, other.forcing, other.cap))
        return out

    def _branch_off(self, trunk: Row) -> list:
        """Give each branch that left the trunk at its last step a row of its own: a copy of the trunk's cache
        (the runtime's `fork`) and of its random stream, so it goes on exactly as it would have alone."""
        finished = []
        forks, trunk.state.forks = trunk.state.forks, []
        for index, state in forks:
            request = self.branching.pop(index)
            generator = _copy_generator(trunk.generator)
            shared = len(os.path.commonprefix([trunk.state.output, state.output]))
            slot = (
                self._spare_slot()
                if getattr(self.runtime, "keeps_prefixes", True) and hasattr(self.runtime, "fork")
                else None
            )
            if slot is None:  # no slot to copy the cache into: it waits and recomputes its prefix
                self.carried[index] = generator
                self.carried_shared[index] = shared
                self.waiting.appendleft((index, replace(request, resume=state, follows=None)))
                continue
            kept = trunk.position
            self.runtime.fork(trunk.slot, slot, kept)
            context = list(request.prompt_token_ids) + state.output
            row = Row(
                index,
                request,
                state,
                generator,
                slot,
                pending=context[kept:],
                position=kept,
                context=len(context),
                prefilled=len(context) - kept,
                since=len(state.output),
                shared=shared,
                alone=len(request.prompt_token_ids),
            )
            row.penalties = self._penalties(request)  # counted afresh from the branch's output so far, as alone
            self.rows.append(row)
            finished += self._force(row)
        if trunk.state.done:  # the branches still following end exactly as the trunk did
            for branch in trunk.state.branches:
                request = self.branching.pop(branch.key)
                state = trunk.state.follower(branch)
                context = len(request.prompt_token_ids)
                row = Row(
                    branch.key,
                    request,
                    state,
                    None,
                    -1,
                    [],
                    context,
                    context=context,
                    shared=len(state.output),
                    alone=context,
                )
                finished.append((branch.key, request, state, row))
            trunk.state.branches = []
        return finished

    def _spare_slot(self) -> int | None:
        """A slot for a branch: a free one, else one past `max_batch` where the runtime has more (a branch
        must start now, while the trunk's cache holds its prefix)."""
        if self.free:
            return self.free.pop(0)
        used = {r.slot for r in self.rows}
        return next((s for s in range(self.max_batch, self.runtime.slots) if s not in used), None)

    def _plan(self) -> list[tuple[Row, int]]:
        """How many pending tokens each row feeds: rows past their prompt first (a token, or a forced run),
        then joining prompts in arrival order within what is left of BATCH_TOKENS. While others decode, a
        long prompt's chunk is what fits in STEP_SECONDS at the measured rate (at least MIN_CHUNK);
        a short one (SHORT_PROMPT) joins whole."""
        runs, room = [], BATCH_TOKENS
        timed = None  # tokens left in this step's time budget, once rows are decoding
        for row in sorted((r for r in self.rows if r.pending), key=lambda r: r.joining):
            if row.joining and timed is None and runs and self.rate is not None:
                timed = int(self.rate * STEP_SECONDS) - (BATCH_TOKENS - room)
            n = min(len(row.pending), room)
            if timed is not None and len(row.request.prompt_token_ids) > SHORT_PROMPT:
                n = min(n, max(timed, MIN_CHUNK))
            if n <= 0:
                break
            runs.append((row, n))
            room -= n
            if timed is not None:
                timed -= n
        return runs

    @staticmethod
    def _want(row: Row, n: int) -> int:
        if (row.prompt_logprobs is not None and row.joining) or row.unscored:
            return 2
        return 1 if n == len(row.pending) else 0

    def _score_prompt(self, row: Row, n: int, logits: torch.Tensor) -> None:
        """Each prompt token's logprob given the tokens before it (None for the first), as `echo` needs."""
        ids = row.request.prompt_token_ids
        logprobs = logits.float().log_softmax(-1)
        for i in range(n):
            target = row.position + i + 1
            if target < len(ids):
                row.prompt_logprobs.append(token_logprobs(logprobs[i], ids[target], row.request.prompt_logprobs))

    def _advance(self, row: Row, n: int, out: torch.Tensor | None) -> torch.Tensor | None:
        """Account for the row's first `n` pending tokens, just fed: score what is owed from their logits
        (every token's, when asked: the prompt to echo, forced tokens) and move on; returns the last token's."""
        if out is not None and out.dim() == 2:
            if row.prompt_logprobs is not None and row.joining:
                self._score_prompt(row, n, out)
            if row.unscored:
                self._score_forced(row, row.pending[:n], out)
            out = out[-1]
        if row.logprobs is not None and out is not None:
            row.last_logits = out
        row.position += n
        del row.pending[:n]
        return out

    def _score_rest(self, row: Row) -> None:
        """A row that ends before its pending tokens were fed still owes their scores: a prompt to echo with
        max_tokens 0, or forced tokens written before a limit ended it. Feed them alone, chunk by chunk."""
        while row.pending and (row.unscored or (row.prompt_logprobs is not None and row.joining)):
            tokens = row.pending[:BATCH_TOKENS]
            [logits] = self.runtime.forward([(row.slot, row.position, tokens, 2)])
            self._advance(row, len(tokens), logits)

    def _score_forced(self, row: Row, tokens: list[int], logits: torch.Tensor) -> None:
        """Logprobs of the forced tokens among `tokens` (fed from row.position), each from the logits of the
        token before it, as if the model had been asked at every step."""
        base = row.position - len(row.request.prompt_token_ids)
        for i, token in enumerate(tokens):
            at = base + i
            if at >= 0 and row.logprobs[at] is None:
                source = logits[i - 1] if i else row.last_logits
                row.logprobs[at] = token_logprobs(source.float().log_softmax(-1), token, row.request.logprobs)
                row.unscored -= 1

    def _choose(self, rows: list[Row], logits: torch.Tensor) -> list:
        """Let each row's forcing state pick its next token; release the rows that finished or failed."""
        logits = self._mask_by_grammar(rows, self._mask_early_stops(rows, logits))
        penalized = [(r.penalties, r.state.output) if r.penalties is not None else None for r in rows]
        try:
            picks = pick_tokens(logits, [r.request.sampling for r in rows], [r.generator for r in rows], penalized)
        except Exception:  # one row's settings broke the batched draw: draw row by row, fail that row alone
            picks = []
            for j, r in enumerate(rows):
                try:
                    one = pick_tokens(logits[j : j + 1], [r.request.sampling], [r.generator], penalized[j : j + 1])
                    picks.append(one[0])
                except Exception as exc:
                    picks.append(exc)
        finished = []
        for j, (row, pick) in enumerate(zip(rows, picks)):
            try:
                if isinstance(pick, Exception):
                    raise pick
                token = row.state.next_token(
                    lambda banned=frozenset(), j=j, pick=pick, row=row: (
                        self._repick(logits, j, row, banned) if banned else pick
                    )
                )
                if row.state.taken_back:  # an end string's start, already fed: the row's cache forgets it
                    self._rewind(row, row.state.taken_back)
                if token is not None and row.logprobs is not None:
                    row.logprobs.append(token_logprobs(logits[j].float().log_softmax(-1), token, row.request.logprobs))
                if token is not None and self.on_token:
                    self.on_token(row.index, token, row.state)
                if token is not None and not row.state.done:
                    row.pending.append(token)
            except Exception as exc:
                self.failed.append((row.index, exc))
                self._release(row)
                continue
            finished += self._force(row)
        return finished

    def _force(self, row: Row) -> list:
        """Queue the run of tokens the state forces before the model's next choice; release a finished row."""

        def appended(token: int) -> None:
            row.pending.append(token)
            if row.logprobs is not None:
                row.logprobs.append(None)
                row.unscored += 1
            if self.on_token:
                self.on_token(row.index, token, row.state)

        try:
            row.state.forced(appended)
        except Exception as exc:
            self.failed.append((row.index, exc))
            self._release(row)
            return []
        finished = self._branch_off(row) if row.state.forks or (row.state.done and row.state.branches) else []
        if row.state.done:
            self._score_rest(row)  # a failing forward here fails the batch, as in `step`
            self._release(row)
            return finished + [(row.index, row.request, row.state, row)]
        step = row.request.step
        if step is not None and not row.pausing:
            row.pausing = step.ended(row.state, row.since, self.format_tokens.text)
        return finished

    def _pause(self, row: Row, logits: torch.Tensor) -> tuple:
        """A row whose step is over leaves with everything fed; its slot is released with the last logits, so
        the runtime can hand its cache to the rows that continue the trajectory."""
        self._release(row, logits)
        return (row.index, row.request, row.state, row)

    def _penalties(self, request: Request) -> Penalties | None:
        """The repetition, presence and frequency counts of a row that sets a penalty; its output is counted at
        the first draw, so a row that starts with output (a resumed or forked trajectory) counts it too."""
        if not request.sampling.penalized:
            return None
        device = getattr(self.runtime, "device", "cpu")
        return Penalties(request.sampling, list(request.prompt_token_ids), self.runtime.vocab_size, device)

    def _rewind(self, row: Row, n: int) -> None:
        """Forget the row's last n fed tokens: the next token is fed at their place."""
        row.position -= n
        self.runtime.rewind(row.slot, row.position)
        if row.logprobs is not None:
            del row.logprobs[len(row.logprobs) - n :]
        if row.penalties is not None:  # the output shrank: its counts are made again from what is left
            row.penalties.counts.zero_()
            row.penalties.seen = 0

    @staticmethod
    def _repick(logits: torch.Tensor, j: int, row: Row, banned: frozenset[int]) -> int:
        """Row j's draw again with `banned` masked: an ignored end of thinking with an empty extension."""
        masked = logits[j : j + 1].clone()
        masked[0, sorted(banned)] = float("-inf")
        penalized = [(row.penalties, row.state.output)] if row.penalties is not None else None
        return pick_tokens(masked, [row.request.sampling], [row.generator], penalized)[0]

    @staticmethod
    def _mask_by_grammar(rows: list[Row], logits: torch.Tensor) -> torch.Tensor:
        """Rows answering under a grammar may only write what it allows (their thinking is free)."""
        ruled = [
            (j, r)
            for j, r in enumerate(rows)
            if r.grammar is not None and r.state.thinking_end is not None and r.state.needs_sample()
        ]
        if not ruled:
            return logits
        logits = logits.clone()
        for j, r in ruled:
            answer = r.state.output[len(r.state.output) - r.state.answer_tokens :] if r.state.answer_tokens else []
            logits[j] = r.grammar.mask(logits[j], answer, r.state.answer_stop_ids)
        return logits

    @staticmethod
    def _mask_early_stops(rows: list[Row], logits: torch.Tensor) -> torch.Tensor:
        """vLLM's `min_tokens`: an answer stop cannot be sampled before that many answer tokens."""
        early = [
            (j, r)
            for j, r in enumerate(rows)
            if r.request.min_tokens
            and r.state.answer_tokens < r.request.min_tokens
            and r.state.needs_sample()
            and r.state.thinking_end is not None
        ]
        if not early:
            return logits
        logits = logits.clone()
        for j, r in early:
            logits[j, sorted(r.state.answer_stop_ids)] = float("-inf")
        return logits

    def _release(self, row: Row, logits: torch.Tensor | None = None) -> None:
        """Take a row out of the batch; the runtime may keep what its slot holds for a prompt with the same start
        (a paused row's, with its last `logits`, for the rows that continue it)."""
        self.rows.remove(row)
        self.runtime.release(row.slot, logits)
        if row.slot < self.max_batch:  # a slot past it was lent to a branch
            self.free.append(row.slot)
