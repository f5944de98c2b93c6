"""Budget forcing: the settings and the per-sequence state machine that applies them.

Pure Python and token-level, so every in-flight engine (transformers, llama.cpp, the server)
shares one meaning of "cap", "ignore the end of thinking" and "minimum thinking" (docs/design.md).
It is the only place where cap, ignored ends, minimum, extension rotation and natural ends are
decided. Two drivers feed it:
- in flight (transformers, llama.cpp): the engine asks `next_token` once per decode step; the state
  lets the model's sampled token through, replaces it, or feeds a forced token without a sample;
- re-prefill (remote servers, the proxy, the reference backend): `round()` says how many tokens the
  model may write next and which stop it, `feed()` takes what a backend call returned, and `forced()`
  appends whatever the state forces before the next call.

One concern, so one module past 400 lines: budget forcing's settings and its one state machine (with the
branches a shared sweep follows), which every engine and driver feeds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

from s1.core.errors import UserError
from s1.core.formats import FormatTokens
from s1.core.settings import setting


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class BudgetForcing:
    """How long a model may think. Declared here once (s1/core/settings.py derives the CLI options, the server's
    request fields and the config keys from these fields); validated here and nowhere else."""

    max_thinking_tokens: int | None = setting(
        None,
        help="Cap on thinking tokens, forced extensions included (none: what the context allows; 0: no thinking).",
        ge=0,
        sweep=True,
    )
    thinking_grace_tokens: int = setting(
        0,
        help="At the cap, up to this many more thinking tokens in which the model may finish its line or sentence: "
        "thinking ends after the first of its tokens (from the cap on) that holds a newline or ends with . ! or ? "
        "(a period after a digit excepted), or when they run out; they count as thinking (0: ends at the cap).",
        ge=0,
    )
    min_thinking_tokens: int = setting(
        0, help="Every attempt to stop thinking before this many tokens is replaced by an extension.", ge=0
    )
    num_ignore: int = setting(
        0,
        help='Ignore the first K attempts to stop thinking, appending an extension instead (s1\'s "Wait" count).',
        ge=0,
        sweep=True,
    )
    extensions: tuple[str, ...] = setting(
        ("Wait",),
        help="Text appended in place of an ignored end of thinking (several are used in turn); an empty one "
        'suppresses the end without appending text (the paper\'s Table 4, "without string").',
        flag="--extension",
    )
    answer_prefix: str = setting(
        "Final Answer:",
        help="Written after a forced end of thinking, so a capped model answers instead of thinking on.",
    )
    max_answer_tokens: int | None = setting(
        1024,
        help="Tokens the model may write after thinking, the stop token included (none: what the context leaves "
        "after the thinking cap, as s1's evaluation did).",
        ge=1,
    )
    max_tokens: int | None = setting(
        None,
        help="Bound on everything generated, thinking and answer together (OpenAI's max_tokens); "
        'reaching it ends with finish_reason "length".',
        ge=0,
    )

    def __post_init__(self):
        if isinstance(self.extensions, str):
            object.__setattr__(self, "extensions", (self.extensions,))
        else:
            object.__setattr__(self, "extensions", tuple(self.extensions))
        mx, mn = self.max_thinking_tokens, self.min_thinking_tokens
        if mx is not None and (not _is_int(mx) or mx < 0):
            raise UserError(
                f"max_thinking_tokens must be zero (no thinking) or a positive whole number, got {mx!r}.",
                "max_thinking_tokens",
                mx,
            )
        grace = self.thinking_grace_tokens
        if not _is_int(grace) or grace < 0:
            raise UserError(
                f"thinking_grace_tokens must be zero (no grace) or a positive whole number, got {grace!r}.",
                "thinking_grace_tokens",
                grace,
            )
        if mx == 0 and grace:  # cap 0 is no thinking: no line to finish, so no grace (in labels, identities or room)
            object.__setattr__(self, "thinking_grace_tokens", 0)
        if not _is_int(mn) or mn < 0:
            raise UserError(
                f"min_thinking_tokens must be zero or a positive whole number, got {mn!r}.", "min_thinking_tokens", mn
            )
        if mx is not None and mn > mx:
            raise UserError(
                f"min_thinking_tokens ({mn}) is larger than max_thinking_tokens ({mx}); lower the minimum or raise "
                "the cap.",
                ("min_thinking_tokens", "max_thinking_tokens"),
                mn,
            )
        if not _is_int(self.num_ignore) or self.num_ignore < 0:
            raise UserError(
                f"num_ignore must be zero or a positive whole number, got {self.num_ignore!r}.",
                "num_ignore",
                self.num_ignore,
            )
        if self.max_answer_tokens is not None and (not _is_int(self.max_answer_tokens) or self.max_answer_tokens < 1):
            raise UserError(
                f"max_answer_tokens must be a positive whole number, got {self.max_answer_tokens!r}.",
                "max_answer_tokens",
                self.max_answer_tokens,
            )
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 0):
            raise UserError(
                f"max_tokens must be zero or a positive whole number, got {self.max_tokens!r}.",
                "max_tokens",
                self.max_tokens,
            )
        if not self.extensions or not all(isinstance(e, str) for e in self.extensions):
            raise UserError(
                "extensions must be a list of strings, such as ['Wait'] (an empty string suppresses the end of "
                "thinking without appending text).",
                "extensions",
                self.extensions,
            )
        if not isinstance(self.answer_prefix, str):
            raise UserError("answer_prefix must be a string (it may be empty).", "answer_prefix", self.answer_prefix)


def _no_sample(banned: frozenset[int] = frozenset()) -> int:
    raise AssertionError("the forcing state asked for a sample while it was forcing tokens")


@dataclass(frozen=True)
class Branch:
    """A setting of a budget sweep that follows another setting's trajectory until its own budget decides
    otherwise (docs/design.md, "Sweeps share one trajectory"): a smaller cap, or fewer ignored ends.
    Only `max_thinking_tokens` and `num_ignore` may differ from the trajectory's forcing."""

    key: int
    forcing: BudgetForcing
    cap: int


class Resample(Exception):
    """Raised by a `sample` that cannot draw again with ids banned (a re-prefill backend's reply is fixed):
    the state keeps `banned` set, so the driver's next round asks its backend to ban them."""


class Phase(Enum):
    THINKING = "thinking"
    ENDING = "ending"  # draining the end delimiter (and, when forced, the answer prefix)
    ANSWER = "answer"
    DONE = "done"


@dataclass
class ForcingState:
    """One sequence's progress through thinking and answering under a `BudgetForcing`."""

    forcing: BudgetForcing
    tokens: FormatTokens
    cap: int
    """The thinking cap in force: the user's, or what the context leaves room for."""
    last_token: int
    """The last prompt token, so a forced end knows whether a newline is already there."""
    output: list[int] = field(default_factory=list)
    phase: Phase = Phase.THINKING
    thinking_tokens: int = 0
    answer_tokens: int = 0
    extensions_used: int = 0
    capped: bool = False
    finish_reason: str | None = None
    thinking_end: int | None = None
    """Index in `output` where the end delimiter starts: output[:thinking_end] is the thinking."""
    answer_stop_ids: frozenset[int] | None = None
    """Ids that end the answer: the format's, plus a request's own `stop_token_ids`."""
    plain: bool = False
    """A plain continuation (no thinking at all): the whole output is the answer."""
    forced_spans: list = field(default_factory=list)
    """[kind, start, end) runs of `output` the state wrote, not the model: "extension", "forced_end" (the
    delimiter and answer prefix at the cap) or "delimiter" (completing a natural end). For reports."""
    taken_back: int = 0
    """Tokens the last step took back out of `output` (already appended, so an in-flight engine already fed
    them): the start of an end of thinking written as text (`FormatTokens.end_strings`), completed by this
    step's sample. The engine rewinds its cache by as many; 0 on every other step."""
    banned: frozenset[int] = frozenset()
    """Ids the model may not choose for its next token: an ignored end of thinking whose extension is empty
    (Table 4's "without string") is suppressed instead of replaced. Set while the state waits for that draw."""
    _pending: deque = field(default_factory=deque)
    branches: list = field(default_factory=list)
    """Branches (`Branch`) still following this trajectory: where it ends they end too, the same way."""
    forks: list = field(default_factory=list)
    """(key, state) of the branches that left this trajectory at its last steps, each at the step where its
    budget decided otherwise, for the engine to continue (from the same cache and random stream)."""
    _scan_from: int = 0
    """Where the model's own text begins for end strings: after the last extension (forced text never ends)."""
    _first_token: int | None = None

    def __post_init__(self):
        if self._first_token is None:
            self._first_token = self.last_token
        if self.answer_stop_ids is None:
            self.answer_stop_ids = self.tokens.answer_stop_ids
        if self.plain:
            self.phase, self.thinking_end = Phase.ANSWER, 0

    def fork(self) -> ForcingState:
        """An independent copy to continue from here: a search expands one trajectory into several."""
        return replace(
            self,
            output=list(self.output),
            forced_spans=[list(s) for s in self.forced_spans],
            _pending=deque(self._pending),
            branches=[],
            forks=[],
        )

    def follow(self, branches: list[Branch]) -> None:
        """Let these branches follow this trajectory; a cap this state has already reached (0) leaves at once."""
        self.branches = list(branches)
        self._leave(lambda b: self.phase is Phase.THINKING and self.thinking_tokens >= b.cap)

    def follower(self, branch: Branch) -> ForcingState:
        """The state of `branch` had it run alone up to here: this one's history under its own budget."""
        state = self.fork()
        state.forcing, state.cap = branch.forcing, branch.cap
        return state

    def _leave(self, differs: Callable[[Branch], bool], token: int | None = None) -> None:
        """Fork the branches whose budget `differs` at this step; with `token`, the branch takes that sampled
        token itself (a natural end it accepts where this trajectory ignores it)."""
        for branch in [b for b in self.branches if differs(b)]:
            self.branches.remove(branch)
            state = self.follower(branch)
            if token is not None:
                state._think(lambda *_: token)
            self.forks.append((branch.key, state))

    @property
    def thinking(self) -> bool:
        """Still in the thinking phase (a search's steps are steps of thinking)."""
        return self.phase is Phase.THINKING

    @property
    def at_limit(self) -> bool:
        return self.forcing.max_tokens is not None and len(self.output) >= self.forcing.max_tokens

    def finish(self, reason: str) -> None:
        """End the sequence for a reason outside forcing (a stop string in the answer, a client's limit)."""
        self._finish(reason)

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def needs_sample(self) -> bool:
        """Whether the next token is the model's choice (False: it is forced, or the sequence ends).

        Lets an engine feed a run of forced tokens in one forward pass instead of one per step.
        """
        if self.at_limit:
            return False
        if self.phase is Phase.THINKING:
            return not self._cap_reached() and not self._pending
        if self.phase is Phase.ANSWER:
            return self.answer_tokens < self.forcing.max_answer_tokens
        return False

    def _cap_reached(self) -> bool:
        """Whether the end of thinking is forced now: at the cap, or, with a grace, once the model's last token
        (the cap-th or one after it) ended a line or sentence, or the grace ran out. Read from the output
        alone, so a branch that leaves a shared trajectory at its own cap judges its grace as a run alone."""
        if self.thinking_tokens < self.cap:
            return False
        grace = self.forcing.thinking_grace_tokens
        if not grace or self.cap == 0 or self.thinking_tokens >= self.cap + grace:
            return True  # a cap of 0 in force (all the context leaves) is no thinking: no line to finish
        spans = self.forced_spans  # forced text (an extension) is not the model finishing its sentence
        own = self.thinking_tokens > 0 and not (spans and spans[-1][2] == len(self.output))
        before = self.output[-2] if len(self.output) > 1 else self._first_token
        return own and self.tokens.ends_line(self.output[-1], before)

    def round(self) -> tuple[int, frozenset[int]]:
        """What the model may write next without the state stepping in: (at most this many tokens, stopping
        after any of these ids). Valid when `needs_sample()`; a re-prefill backend call asks for exactly this."""
        room = self.forcing.max_tokens - len(self.output) if self.forcing.max_tokens is not None else None
        if self.phase is Phase.THINKING:
            # up to the cap, then the grace as a round of its own (`feed` stops taking at the token that ends the
            # line): a shared sweep's branch leaves at its cap, where its setting run alone also ends a round
            budget = self.cap - self.thinking_tokens
            if budget <= 0:
                budget = self.cap + self.forcing.thinking_grace_tokens - self.thinking_tokens
            stops = self.tokens.end_trigger_ids
        else:
            budget, stops = self.forcing.max_answer_tokens - self.answer_tokens, self.answer_stop_ids
        return (budget if room is None else min(budget, room)), stops

    def feed(self, tokens: list[int]) -> int:
        """Hand the state the tokens one backend call generated; returns how many it took.

        It takes them one by one as if sampled and stops taking at the first token that changes the
        phase or is replaced (an end of thinking, an answer stop), so a backend that ran past a stop
        cannot smuggle tokens in.
        """
        taken = 0
        for token in tokens:
            if self.done or not self.needs_sample():
                break
            phase = self.phase

            def given(banned: frozenset[int] = frozenset(), token=token) -> int:
                if banned:
                    raise Resample
                return token

            try:
                emitted = self.next_token(given)
            except Resample:  # this token was an ignored end with an empty extension: the next round bans it
                break
            taken += 1
            if emitted != token or self.phase is not phase:
                break
        return taken

    def forced(self, on_token: Callable[[int], None] | None = None) -> list[int]:
        """Append everything the state forces before the model's next choice (an extension, the end
        delimiter and answer prefix, or the end of the sequence) and return those tokens; `on_token` is
        called with each one right after it is appended (for streaming)."""
        out = []
        while not self.done and not self.needs_sample():
            token = self.next_token(_no_sample)
            if token is not None:
                out.append(token)
                if on_token:
                    on_token(token)
        return out

    def next_token(self, sample: Callable[[], int]) -> int | None:
        """The token this sequence appends this step, or None once it is finished.

        `sample` is called only when the model's own choice matters, so a step that feeds a forced
        token wastes nothing but the logits it ignores. `sample(banned)` draws again with those ids masked
        (an ignored end with an empty extension); a driver that cannot raises `Resample`.
        """
        self.taken_back = 0
        if self.phase is not Phase.DONE and self.at_limit:
            return self._finish("length")
        if self.phase is Phase.THINKING:
            return self._think(sample)
        if self.phase is Phase.ENDING:
            return self._emit(self._pending.popleft(), self._ending_kind)
        if self.phase is Phase.ANSWER:
            return self._answer(sample)
        return None

    def _think(self, sample) -> int:
        if self._cap_reached():
            self.capped = True
            after_newline = self.tokens.ends_with_newline(self.last_token)
            return self._end(self.tokens.forced_end(self.forcing.answer_prefix, after_newline))
        if self._pending:
            return self._emit(self._pending.popleft(), "extension")
        graced = self.thinking_tokens >= self.cap  # in the grace past the cap: an end is the model's, never ignored
        token = sample()
        self.banned = frozenset()
        by_text = False
        if token not in self.tokens.end_trigger_ids:
            at = self.tokens.string_end(self.output, self._scan_from, token) if self.tokens.end_strings else None
            if at is None:
                return self._emit(token)
            # an end of thinking written as text: it leaves the thinking, as a single end token would (sweeps
            # with end strings do not share a trajectory, so no branch follows this state here)
            first = self.output[at] if at < len(self.output) else token
            self._take_back(at)
            token, by_text = first, True
        if not graced and self._ignores(self.forcing):
            if self.branches:  # a branch with fewer ignored ends accepts this end
                self._leave(lambda b: not self._ignores(b.forcing), token)
            extension = self.forcing.extensions[self.extensions_used % len(self.forcing.extensions)]
            self.extensions_used += 1
            ids = self.tokens.extension(extension)
            if not ids:  # "without string": the model's next choice, its ends masked (s1's min_tokens=1)
                self.banned = self.tokens.end_trigger_ids | ({token} if by_text else set())
                token = sample(self.banned)
                self.banned = frozenset()
                return self._emit(token)
            self._pending.extend(ids)
            self._scan_from = len(self.output) + len(ids)
            return self._emit(self._pending.popleft(), "extension", new_span=True)
        if by_text:
            return self._end(self.tokens.think_end_ids)
        keep, rest = self.tokens.natural_end(token)
        if keep:
            return self._end(rest, first=token)
        return self._end(rest)

    def _ignores(self, forcing: BudgetForcing) -> bool:
        """Whether an attempt to end thinking here is replaced by an extension under `forcing`."""
        return self.extensions_used < forcing.num_ignore or self.thinking_tokens < forcing.min_thinking_tokens

    def _take_back(self, at: int) -> None:
        """Remove output[at:] (thinking the model wrote) from the sequence."""
        self.taken_back = len(self.output) - at
        self.thinking_tokens -= self.taken_back
        del self.output[at:]
        self.last_token = self.output[-1] if self.output else self._first_token

    @property
    def unsettled(self) -> int:
        """Trailing thinking tokens that may yet be taken back (the start of an end string): streams hold them."""
        if self.phase is not Phase.THINKING or not self.tokens.end_strings:
            return 0
        return self.tokens.held(self.output, self._scan_from)

    def _end(self, delimiter: tuple[int, ...], first: int | None = None) -> int:
        """Leave thinking: queue the delimiter tokens and emit the first of them."""
        self.thinking_end = len(self.output)
        self._pending = deque(delimiter)
        self.phase = Phase.ENDING
        if first is None:
            return self._emit(self._pending.popleft(), self._ending_kind)
        return self._emit(first)

    @property
    def _ending_kind(self) -> str:
        return "forced_end" if self.capped else "delimiter"

    def _answer(self, sample) -> int | None:
        if self.answer_tokens >= self.forcing.max_answer_tokens:
            return self._finish("length")
        token = sample()
        self._emit(token)
        if token in self.answer_stop_ids:
            self._finish("stop")
        return token

    def _emit(self, token: int, forced: str | None = None, new_span: bool = False) -> int:
        if forced is not None:
            spans, at = self.forced_spans, len(self.output)
            if spans and not new_span and spans[-1][0] == forced and spans[-1][2] == at:
                spans[-1][2] = at + 1
            else:
                spans.append([forced, at, at + 1])
        self.output.append(token)
        self.last_token = token
        if self.phase is Phase.THINKING:
            self.thinking_tokens += 1
            if self.branches:  # a smaller cap is reached: that branch forces its end next, before any sample
                self._leave(lambda b: self.thinking_tokens >= b.cap)
        elif self.phase is Phase.ANSWER:
            self.answer_tokens += 1
        elif not self._pending:
            self.phase = Phase.ANSWER
        return token

    def _finish(self, reason: str) -> None:
        self.phase = Phase.DONE
        self.finish_reason = reason
        return None
