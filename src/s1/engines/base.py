"""What every engine shares: sampling settings, the request and the completion record.

Evaluation, serving and curation only ever see `Completion`, so they never care which engine ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

from s1.core.errors import UserError, named
from s1.core.forcing import BudgetForcing, ForcingState
from s1.core.formats import FormatTokens, ThinkingFormat, encode, render_chat, render_prompt
from s1.core.sampling import Sampling

TokenLogprob = tuple[float, dict[int, float]]
"""A token's log-probability under the model, and the `k` most likely tokens at that position."""


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
    stop_reason: int | str | None = None
    """The stop token id or stop string that ended the sequence (vLLM's `stop_reason`); None otherwise."""
    logprobs: list[TokenLogprob] | None = None
    """Per output token, when the request asked for logprobs."""
    prompt_logprobs: list[TokenLogprob | None] | None = None
    """Per prompt token (None for the first), when the request asked for them (`echo` with logprobs)."""
    forced_spans: list[list] = field(default_factory=list)
    """[kind, start, end) runs of `output_token_ids` written by budget forcing (ForcingState.forced_spans)."""
    prefill_tokens: int | None = None
    """Prompt tokens the engine actually processed for this request (what a kept or forked prefix saved is
    not counted); None where the engine cannot tell."""
    shared_tokens: int = 0
    """Leading output tokens this sequence took over from the trajectory it followed in a shared budget sweep
    (`Request.follows`), generated once for all the settings that share them."""
    separate_prefill_tokens: int | None = None
    """Prompt tokens this request's setting would have processed run alone, for a branch of a shared sweep
    (its prompt once in an in-flight engine; in the re-prefill loop every round's prompt, the rounds of the
    trajectory before it forked off included); None where that is what it processed (`prefill_tokens`)."""
    state: ForcingState | None = field(default=None, repr=False, compare=False)
    """Where a paused trajectory stands (finish_reason "step"): a search continues it with `Request.resume`."""

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "state"}

    @property
    def prompt_tokens_processed(self) -> int:
        """`prefill_tokens`, or the whole prompt where the engine could not tell."""
        return self.prefill_tokens if self.prefill_tokens is not None else len(self.prompt_token_ids)

    @property
    def prompt_tokens_alone(self) -> int:
        """Prompt tokens its setting run alone processes: `separate_prefill_tokens`, else what this did."""
        alone = self.separate_prefill_tokens
        return alone if alone is not None else self.prompt_tokens_processed

    @property
    def generated_tokens(self) -> int:
        """Output tokens this request generated itself (a shared sweep's branch: after it forked off)."""
        return len(self.output_token_ids) - self.shared_tokens


@dataclass
class Request:
    """A prompt ready for an engine: rendered, encoded, with its own budget and sampling."""

    prompt: str
    prompt_token_ids: list[int]
    forcing: BudgetForcing
    sampling: Sampling
    cap: int
    """Thinking cap in force for this prompt (the user's, or the room the context leaves)."""
    plain: bool = False
    """A plain continuation of the prompt: no thinking, the whole output is the answer."""
    stop_token_ids: frozenset[int] = frozenset()
    """The request's own ids that end the answer, besides the format's."""
    logprobs: int | None = None
    """Return each output token's logprob and this many alternatives (0: the token's alone)."""
    prompt_logprobs: int | None = None
    """Return each prompt token's logprob and this many alternatives."""
    min_tokens: int = 0
    """Answer tokens before an answer stop may end it (vLLM's `min_tokens`; engines that mask logits only)."""
    resume: ForcingState | None = None
    """Continue this trajectory (a copy of it) instead of starting afresh: the engine feeds the prompt and
    the trajectory's output so far, from a kept prefix where it holds one. Used by tree search."""
    step: StepRule | None = None
    """Pause the trajectory after one step of thinking (finish_reason "step"); None runs it to the end."""
    follows: int | None = None
    """A budget sweep's sharing (docs/design.md, "Sweeps share one trajectory"): the index, in the same
    `generate` call, of a request with the same prompt, sampling and forcing but a cap and Wait count at
    least this one's; this request follows that one's trajectory and branches off where its own budget
    decides otherwise. Engines that cannot fork (reprefill, remote) run it on its own: the same tokens."""
    grammar: str | None = None
    """A grammar (engines/structured.py) the answer after thinking must match; the thinking stays free."""
    affinity: str | None = None
    """Requests with the same affinity (a search's nodes) go to the same remote server, so its prefix
    cache serves what they share; in-process engines keep such prefixes themselves."""


@dataclass(frozen=True)
class StepRule:
    """Where a search pauses a trajectory to score it: after a step of thinking. A step ends once its text
    holds the delimiter (a blank line by default, as REBASE and the PRMs trained on PRM800K split steps)
    after some non-blank text, or after `max_tokens` tokens. `max_tokens` 0 pauses before the first token:
    the prompt alone is processed, so a search's root holds its prefix once for all its children.
    The answer is not split: once thinking ends, the trajectory runs to its end."""

    delimiter: str = "\n\n"
    max_tokens: int = 256

    def __post_init__(self):
        if not isinstance(self.delimiter, str) or not self.delimiter:
            raise UserError("The step delimiter must be non-empty text, such as a blank line.")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 0:
            raise UserError(f"--max-step-tokens must be a whole number of tokens, got {self.max_tokens!r}.")

    def ended(self, state: ForcingState, since: int, text: Callable[[list[int]], str]) -> bool:
        """Whether the step that began at output index `since` is over (checked after each appended token):
        the delimiter was completed by the last token, after non-blank text of this step."""
        if self.max_tokens == 0:
            return True
        if not state.thinking or state.done:
            return False
        out = state.output
        if len(out) - since >= self.max_tokens:
            return True
        if len(out) <= since or self.delimiter[-1] not in text(out[-1:]):
            return False  # the delimiter cannot have been completed by this token
        full, before = text(out[since:]), text(out[since:-1])
        at = full.rfind(self.delimiter)
        return at >= 0 and at + len(self.delimiter) > len(before) and bool(full[:at].strip())


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
    thinking: bool = True,
) -> Request:
    """Render one question through the chat template and prepare it (see `prepare`). Without `thinking` (or
    under a format that has none) the prompt ends at the assistant header and the whole reply is the answer:
    no thinking block is opened."""
    if not isinstance(question, str) or not question.strip():
        raise UserError("The question is empty; pass the text of a question.")
    if thinking and format_tokens.fmt.thinks:
        prompt = render_prompt(tokenizer, question, format_tokens.fmt, system)
        return prepare(tokenizer, format_tokens, context_length, prompt, forcing, sampling)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    prompt = render_chat(tokenizer, messages)
    return prepare(tokenizer, format_tokens, context_length, prompt, forcing, sampling, plain=True)


def prepare(
    tokenizer,
    format_tokens: FormatTokens,
    context_length: int,
    prompt: str,
    forcing: BudgetForcing,
    sampling: Sampling,
    **options,
) -> Request:
    """Encode a rendered prompt and check that prompt plus budget fit the model's context.

    A cap the context cannot hold is an error, not a silent clamp: a sweep over budgets whose largest
    point is quietly clamped would plot a point at the wrong place. With no cap, thinking may use
    whatever the context leaves after the answer's room.
    """
    ids = encode(tokenizer, prompt)
    return prepare_ids(format_tokens, context_length, prompt, ids, forcing, sampling, **options)


def prepare_ids(
    format_tokens: FormatTokens,
    context_length: int,
    prompt: str,
    ids: list[int],
    forcing: BudgetForcing,
    sampling: Sampling,
    **options,
) -> Request:
    """`prepare` for a prompt already given as token ids (the server's `prompt: [ids]`); `options` are
    `Request`'s per-request fields (plain, stop_token_ids, logprobs, prompt_logprobs)."""
    if not ids:
        raise UserError("The prompt is empty; send at least one token.")
    for text in forcing.extensions:
        format_tokens.check_extension(text)
    if len(ids) >= context_length:
        raise UserError(
            f"The prompt alone is {len(ids)} tokens, and the model's context holds {context_length}, leaving no room "
            f"for any output; shorten the prompt to under {context_length} tokens (or use a model with a longer "
            "context)."
        )
    if forcing.max_answer_tokens is None:
        forcing = _answer_room(format_tokens, context_length, len(ids), forcing, options.get("plain", False))
    if not format_tokens.fmt.thinks:
        options["plain"] = True
    if options.get("plain"):
        room = context_length - len(ids)
        budget = forcing.max_tokens if forcing.max_tokens is not None else forcing.max_answer_tokens
        if budget > room:
            limit = named("max_tokens" if forcing.max_tokens is not None else "max_answer_tokens")
            raise UserError(
                f"The prompt ({len(ids)} tokens) plus {limit} ({budget}) exceed the model's context of "
                f"{context_length} tokens; lower {limit} to at most {room}."
            )
        return Request(prompt=prompt, prompt_token_ids=ids, forcing=forcing, sampling=sampling, cap=0, **options)
    ending = len(format_tokens.forced_end(forcing.answer_prefix, after_newline=False))
    _check_fixed_parts(format_tokens, context_length, len(ids), ending, forcing)
    grace = forcing.thinking_grace_tokens  # thinking may run this far past the cap: the context holds it too
    room = context_length - len(ids) - ending - forcing.max_answer_tokens
    if forcing.max_thinking_tokens is None:
        cap = room - grace
        if cap < 0:
            raise UserError(
                f"{named('thinking_grace_tokens')} ({grace}) is more than the {room} thinking tokens the prompt "
                f"({len(ids)} tokens) and answer budget leave in the model's context of {context_length}; lower it "
                f"to at most {room}."
            )
    else:
        cap = forcing.max_thinking_tokens
        if cap + grace > room:
            answer_room = context_length - len(ids) - ending - cap - grace
            fix = (
                f"lower {named('max_thinking_tokens')} to at most {room - grace}"
                if room - grace >= 0
                else f"lower {named('thinking_grace_tokens')} and {named('max_thinking_tokens')} to at most {room} "
                "together"
            )
            raise UserError(
                f"The prompt ({len(ids)} tokens) plus {cap} thinking"
                + (f" (and {grace} of grace)" if grace else "")
                + f" and {forcing.max_answer_tokens} answer tokens exceed the model's context of {context_length} "
                f"tokens; {fix}"
                + (f" or {named('max_answer_tokens')} to at most {answer_room}." if answer_room >= 1 else ".")
            )
    if forcing.min_thinking_tokens > cap:
        raise UserError(
            f"{named('min_thinking_tokens')} ({forcing.min_thinking_tokens}) cannot fit: the prompt ({len(ids)} "
            f"tokens) and answer budget leave room for {cap} thinking tokens in the model's context of "
            f"{context_length}; lower the minimum."
        )
    return Request(prompt=prompt, prompt_token_ids=ids, forcing=forcing, sampling=sampling, cap=cap, **options)


def _check_fixed_parts(format_tokens: FormatTokens, context_length: int, prompt: int, ending: int, forcing) -> None:
    """The parts of a request other than the thinking budget (the prompt, the forced end with its answer
    prefix, the answer budget) must leave room for at least one thinking token; a refusal names the part that
    is too long and what would fit, never a thinking cap of 0 that could not help."""
    free = context_length - prompt  # for thinking, the forced end (delimiter + answer prefix) and the answer
    prefix = ending - len(format_tokens.forced_end("", after_newline=False))
    left = free - ending  # for thinking and the answer
    if left < 2:
        if forcing.answer_prefix and prefix > 0 and free - (ending - prefix) >= 3:
            raise UserError(
                f"{named('answer_prefix')} is {prefix} tokens, too long for what the prompt ({prompt} tokens) leaves "
                f"of the model's context of {context_length}; shorten {named('answer_prefix')} to at most "
                f"{free - (ending - prefix) - 2} tokens (one thinking and one answer token would then fit)."
            )
        raise UserError(
            f"The prompt ({prompt} tokens) leaves {free} of the model's context of {context_length} tokens, too few "
            f"for thinking, its end ({ending} tokens) and an answer; shorten the prompt."
        )
    if forcing.max_answer_tokens >= left:
        cap = (forcing.max_thinking_tokens or 1) + forcing.thinking_grace_tokens  # the grace is thinking room too
        fix = (
            f"lower {named('max_answer_tokens')} to at most {left - cap}"
            if left - cap >= 1
            else f"lower {named('max_answer_tokens')} and {named('max_thinking_tokens')} to at most {left} together"
        )
        shorter = left + prefix - forcing.max_answer_tokens - cap  # the longest answer prefix that would fit
        if prefix > 0 and shorter >= 0:
            fix += f", or shorten {named('answer_prefix')} ({prefix} tokens) to at most {shorter} tokens"
        raise UserError(
            f"The prompt ({prompt} tokens), the end of thinking"
            + (f" with {named('answer_prefix')} ({ending} tokens)" if prefix > 0 else f" ({ending} tokens)")
            + f" and {named('max_answer_tokens')} ({forcing.max_answer_tokens}) leave no room to think in the "
            f"model's context of {context_length} tokens; {fix}."
        )


ANSWER_RESERVE = 1024
"""Answer tokens kept free when neither a cap nor an answer budget is given (the interactive default)."""


def _answer_room(
    format_tokens: FormatTokens, context_length: int, prompt: int, forcing: BudgetForcing, plain: bool
) -> BudgetForcing:
    """No answer budget: the answer may use what the context leaves after the prompt, the cap and the forced
    end (s1's evaluation let vLLM fill the context); with no cap either, thinking leaves ANSWER_RESERVE.
    Thinking keeps at least one token of room even at cap 0, as every request's arithmetic asks
    (`_check_fixed_parts`): the answer is one token shorter, never refused."""
    room = context_length - prompt
    if not plain and format_tokens.fmt.thinks:
        cap = forcing.max_thinking_tokens
        ending = len(format_tokens.forced_end(forcing.answer_prefix, after_newline=False))
        grace = forcing.thinking_grace_tokens
        room -= ending + (max(cap + grace, 1) if cap is not None else max(room - ending - ANSWER_RESERVE, 1 + grace))
    if room < 1:
        grace = f" and its grace ({forcing.thinking_grace_tokens})" if forcing.thinking_grace_tokens else ""
        raise UserError(
            f"The prompt ({prompt} tokens) and {named('max_thinking_tokens')} ({forcing.max_thinking_tokens}){grace} "
            f"leave no room for an answer in the model's context of {context_length} tokens; lower the cap"
            + (" or the grace." if grace else ".")
        )
    return replace(forcing, max_answer_tokens=room)


def new_state(request: Request, format_tokens: FormatTokens) -> ForcingState:
    return ForcingState(
        forcing=request.forcing,
        tokens=format_tokens,
        cap=request.cap,
        last_token=request.prompt_token_ids[-1],
        answer_stop_ids=format_tokens.answer_stop_ids | request.stop_token_ids,
        plain=request.plain,
    )


def to_completion(
    request: Request,
    state: ForcingState,
    tokenizer,
    fmt: ThinkingFormat,
    logprobs: list | None = None,
    prompt_logprobs: list | None = None,
    prefill_tokens: int | None = None,
    shared_tokens: int = 0,
    separate_prefill_tokens: int | None = None,
) -> Completion:
    """Split the output into thinking and answer text at the recorded end of thinking. A trajectory paused
    after a step (not done) has finish_reason "step" and carries its state, to be resumed."""
    out = state.output
    end = state.thinking_end if state.thinking_end is not None else len(out)
    thinking = tokenizer.decode(out[:end], skip_special_tokens=False)
    tail = out[end:]
    stopped_by_token = bool(tail) and state.finish_reason == "stop" and tail[-1] in state.answer_stop_ids
    if stopped_by_token:
        tail = tail[:-1]
    tail_text = tokenizer.decode(tail, skip_special_tokens=False)
    if state.plain:
        answer = tail_text
    else:
        # a limit that cut the end delimiter short leaves no answer: its first tokens never reach content
        _, found, answer = tail_text.partition(fmt.think_end)
        answer = answer.lstrip("\n") if found else ""
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
        finish_reason=state.finish_reason or ("length" if state.done else "step"),
        stop_reason=out[-1] if stopped_by_token and out[-1] in request.stop_token_ids else None,
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        forced_spans=[list(span) for span in state.forced_spans],
        prefill_tokens=prefill_tokens,
        shared_tokens=shared_tokens,
        separate_prefill_tokens=separate_prefill_tokens,
        state=None if state.done else state,
    )
