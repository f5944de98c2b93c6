"""What every engine shares: sampling settings, the request and the completion record.

Evaluation, serving and curation only ever see `Completion`, so they never care which engine ran.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Protocol

from ..errors import UserError
from ..forcing import BudgetForcing, ForcingState
from ..formats import FormatTokens, ThinkingFormat, encode, render_prompt


SEED_LIMIT = 2**63
"""Seeds run from 0 to 2**63-1: what every engine's generator accepts."""


@dataclass(frozen=True)
class Sampling:
    """temperature 0 is greedy decoding, as s1 evaluates."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        t, p = self.temperature, self.top_p
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise UserError(f"temperature must be zero (greedy) or a positive number, got {t!r}.")
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 < p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {p!r}.")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < SEED_LIMIT):
            raise UserError(f"seed must be a whole number from 0 to 2**63-1, got {self.seed!r}.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    """One sequence's result; every engine returns exactly these fields."""

    prompt: str
    prompt_token_ids: list[int]
    """Everything fed before generation, the thinking-start delimiter included."""
    output_token_ids: list[int]
    """Thinking (forced extensions included), the end delimiter, answer prefix and answer."""
    thinking: str
    answer: str
    thinking_tokens: int
    answer_tokens: int
    extensions_used: int
    capped: bool
    finish_reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Request:
    """A prompt ready for an engine: rendered, encoded, with its own budget and sampling."""

    prompt: str
    prompt_token_ids: list[int]
    forcing: BudgetForcing
    sampling: Sampling
    cap: int
    """Thinking cap in force for this prompt (the user's, or the room the context leaves)."""


OnToken = Callable[[int, int, ForcingState], None]
"""Called as on_token(request_index, token_id, state) after each appended token."""
OnCompletion = Callable[[int, "Completion"], None]
"""Called as on_completion(request_index, completion) as soon as a sequence finishes."""


class Engine(Protocol):
    tokenizer: object
    format_tokens: FormatTokens

    @property
    def context_length(self) -> int: ...

    def generate(
        self,
        requests: list[Request],
        batch_size: int = 8,
        on_token: OnToken | None = None,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]: ...


def make_request(
    tokenizer,
    format_tokens: FormatTokens,
    context_length: int,
    question: str,
    forcing: BudgetForcing,
    sampling: Sampling,
    system: str | None = None,
) -> Request:
    """Render one question through the chat template and prepare it (see `prepare`)."""
    if not isinstance(question, str) or not question.strip():
        raise UserError("The question is empty; pass the text of a question.")
    prompt = render_prompt(tokenizer, question, format_tokens.fmt, system)
    return prepare(tokenizer, format_tokens, context_length, prompt, forcing, sampling)


def prepare(
    tokenizer, format_tokens: FormatTokens, context_length: int, prompt: str, forcing: BudgetForcing, sampling: Sampling
) -> Request:
    """Encode a rendered prompt and check that prompt plus budget fit the model's context.

    A cap the context cannot hold is an error, not a silent clamp: a sweep over budgets whose largest
    point is quietly clamped would plot a point at the wrong place. With no cap, thinking may use
    whatever the context leaves after the answer's room.
    """
    ids = encode(tokenizer, prompt)
    ending = len(format_tokens.forced_end(forcing.answer_prefix, after_newline=False))
    room = context_length - len(ids) - ending - forcing.max_answer_tokens
    if forcing.max_thinking_tokens is None:
        if room < 1:
            raise UserError(
                f"The prompt ({len(ids)} tokens) and max_answer_tokens ({forcing.max_answer_tokens}) leave no room "
                f"to think in the model's context of {context_length} tokens; shorten the prompt or lower "
                "--max-answer-tokens."
            )
        cap = room
    else:
        cap = forcing.max_thinking_tokens
        if cap > room:
            raise UserError(
                f"The prompt ({len(ids)} tokens) plus {cap} thinking and {forcing.max_answer_tokens} answer tokens "
                f"exceed the model's context of {context_length} tokens; lower --max-thinking-tokens to at most "
                f"{max(room, 0)} or lower --max-answer-tokens."
            )
    return Request(prompt=prompt, prompt_token_ids=ids, forcing=forcing, sampling=sampling, cap=cap)


def new_state(request: Request, format_tokens: FormatTokens) -> ForcingState:
    return ForcingState(
        forcing=request.forcing,
        tokens=format_tokens,
        cap=request.cap,
        last_token=request.prompt_token_ids[-1],
    )


def to_completion(request: Request, state: ForcingState, tokenizer, fmt: ThinkingFormat) -> Completion:
    """Split the output into thinking and answer text at the recorded end of thinking."""
    out = state.output
    end = state.thinking_end if state.thinking_end is not None else len(out)
    thinking = tokenizer.decode(out[:end], skip_special_tokens=False)
    tail = out[end:]
    if tail and state.finish_reason == "stop":
        tail = tail[:-1]
    tail_text = tokenizer.decode(tail, skip_special_tokens=False)
    _, found, answer = tail_text.partition(fmt.think_end)
    answer = (answer if found else tail_text).lstrip("\n")
    return Completion(
        prompt=request.prompt,
        prompt_token_ids=list(request.prompt_token_ids),
        output_token_ids=list(out),
        thinking=thinking,
        answer=answer,
        thinking_tokens=state.thinking_tokens,
        answer_tokens=state.answer_tokens,
        extensions_used=state.extensions_used,
        capped=state.capped,
        finish_reason=state.finish_reason or "length",
    )
