"""The OpenAI API as vLLM serves it: request bodies, their meaning as s1 `Request`s, and response shapes.

Field names and defaults follow OpenAI's and vLLM's, so existing clients (the openai SDK, litellm,
lm-evaluation-harness) work unchanged. A field s1 does not implement is refused with a 400 naming it
rather than silently ignored; neutral values of such fields (a penalty of 0, `top_k` -1) are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from s1.core.forcing import BudgetForcing
from s1.core.formats import encode, open_thinking, render_messages
from s1.core.sampling import Sampling, derive_seed
from s1.core.settings import Declared, declared, element
from s1.engines.base import Completion, Request, prepare_ids
from s1.serve.schedulers import Stream

FORCING = declared(BudgetForcing)
SAMPLING = declared(Sampling)
BUDGET_FIELDS = tuple(d.name for d in FORCING if d.name != "max_tokens")
"""Fields that ask for budget forcing (a completions request that sets one is forced); max_tokens is OpenAI's."""
MAX_N = 16
MAX_PROMPTS = 256
MAX_LOGPROBS = 20
PLAIN_MAX_TOKENS = 16
"""A plain completion's default length, as OpenAI's legacy API and vLLM's completions endpoint."""


class BadRequest(Exception):
    """A request the server will not run; the message is the one sentence the client gets with its 400."""


@dataclass
class Defaults:
    """Server-wide settings for requests that carry none (`s1 serve --max-thinking-tokens ...`): a request's
    field that is absent (or null) takes its value from these, field by field."""

    forcing: BudgetForcing = BudgetForcing()
    sampling: Sampling = Sampling()
    reasoning_effort_caps: dict[str, int] = field(default_factory=lambda: {"low": 512, "medium": 2048, "high": 8192})

    def forcing_for(self, body: _Body, max_tokens: int | None, max_thinking: int | None) -> BudgetForcing:
        """A request's budget: each field it sets, these defaults for each it does not. `max_tokens` and
        `max_thinking` are the request's own after its endpoint's aliases (max_completion_tokens,
        reasoning_effort)."""
        asked = {d.field: getattr(body, d.name) for d in FORCING}
        asked.update(max_tokens=max_tokens, max_thinking_tokens=max_thinking)
        if isinstance(asked["extensions"], str):
            asked["extensions"] = [asked["extensions"]]
        if not asked["extensions"]:
            asked["extensions"] = None  # an empty list asks for nothing: the default extensions
        given = {name: value for name, value in asked.items() if value is not None}
        if max_thinking is not None and "min_thinking_tokens" not in given:
            # the server's minimum, not asked for, never exceeds a cap the request asked for
            given["min_thinking_tokens"] = min(self.forcing.min_thinking_tokens, max_thinking)
        return replace(self.forcing, **given)

    def sampling_for(self, body: _Body) -> Sampling:
        """A request's sampling: each field it sets, these defaults for each it does not."""
        return replace(
            self.sampling, **{d.field: getattr(body, d.name) for d in SAMPLING if getattr(body, d.name) is not None}
        )

    def plain_max_tokens(self, body: _Body) -> int:
        """A plain completion's length: the request's max_tokens, the server's, else 16 (as vLLM)."""
        for limit in (body.max_tokens, self.forcing.max_tokens):
            if limit is not None:
                return limit
        return PLAIN_MAX_TOKENS


def _request_field(d: Declared):
    """A declared setting as an optional request field: absent means the server's default. A list setting also
    takes one string (`"extensions": "Wait"`), as OpenAI's `stop` does."""
    base, _, many = element(d.type)
    kind = list[base] | base | None if many else base | None
    return kind, Field(default=None, description=d.help, **d.bounds())


_Settings = create_model(
    "_Settings",
    __config__=ConfigDict(extra="forbid"),
    **{d.name: _request_field(d) for d in FORCING + SAMPLING},
)
"""Budget forcing (s1's fields, and OpenAI's max_tokens) and sampling: the request fields declared on
`BudgetForcing` and `Sampling`, with their names, types and ranges."""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Body(_Settings):
    """Fields both endpoints take. Unknown fields are refused (extra="forbid")."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    min_tokens: int = Field(default=0, ge=0)
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    user: str | None = None
    # accepted at their neutral values only
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    repeat_penalty: float = 1.0  # llama.cpp's name for it
    top_k: int | None = None
    logit_bias: dict | None = None
    ignore_eos: bool = False
    budget_forcing: bool | None = None
    """s1: force the budget on a completions prompt (default: when a budget field is set or the prompt ends
    inside a thinking block)."""


class CompletionBody(_Body):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    return_token_ids: bool = False
    suffix: str | None = None
    best_of: int | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatBody(_Body):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    reasoning_effort: str | None = None
    response_format: dict | None = None
    tools: list | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None


@dataclass
class Job:
    """One choice to generate: the engine request, how its text is cut, and its index in the response."""

    index: int
    request: Request
    stream: Stream
    prompt_index: int


IN_PROCESS = ("hf", "llamacpp")
"""Engines whose rows run in `engines.batching.BatchLoop`, which sees the logits (logprobs, min_tokens)."""


def refuse_unsupported(body: _Body, engine_name: str) -> None:
    """Fields that are accepted only at their neutral values, and options only some engines have."""
    neutral = {
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "repetition_penalty": 1.0,
        "repeat_penalty": 1.0,
        "ignore_eos": False,
    }
    for name, value in neutral.items():
        if getattr(body, name) != value:
            raise BadRequest(f"{name}={getattr(body, name)!r} is not supported by s1 serve; leave it at {value!r}.")
    if body.top_k not in (None, 0, -1):
        raise BadRequest("top_k is not supported by s1 serve; use top_p (or leave top_k at -1).")
    if body.logit_bias:
        raise BadRequest("logit_bias is not supported by s1 serve; remove it.")
    if body.stream_options is not None and not body.stream:
        raise BadRequest("stream_options is only allowed with stream: true.")
    if body.min_tokens and engine_name not in IN_PROCESS:
        raise BadRequest(
            "min_tokens needs an in-process engine (it masks stop tokens in the logits); remove it or serve with "
            "--engine hf or llamacpp."
        )
    if isinstance(body, CompletionBody):
        if body.suffix:
            raise BadRequest("suffix (fill-in-the-middle) is not supported by s1 serve; remove it.")
        if body.best_of not in (None, 1):
            raise BadRequest("best_of is not supported by s1 serve; use n for several samples.")
        if body.stream and (body.echo or body.logprobs is not None or body.return_token_ids):
            raise BadRequest(
                "echo, logprobs and return_token_ids are supported without streaming only; set stream: false."
            )
    if isinstance(body, ChatBody):
        if body.tools or body.tool_choice not in (None, "none", "auto"):
            raise BadRequest("tools and tool_choice are not supported by s1 serve; remove them.")
        if body.response_format and body.response_format.get("type") != "text":
            raise BadRequest(
                f"response_format {body.response_format.get('type')!r} is not supported (s1 serve has no guided "
                "decoding); "
                "use {'type': 'text'} or remove it."
            )
        if body.top_logprobs is not None and not body.logprobs:
            raise BadRequest("top_logprobs needs logprobs: true.")
        if body.stream and body.logprobs:
            raise BadRequest("logprobs are supported without streaming only; set stream: false.")
    wants_logprobs = (isinstance(body, CompletionBody) and body.logprobs is not None) or (
        isinstance(body, ChatBody) and body.logprobs
    )
    if wants_logprobs and engine_name not in IN_PROCESS:
        raise BadRequest("logprobs need an in-process engine; serve with --engine hf or llamacpp, or remove logprobs.")


class Translator:
    """Turns request bodies into engine `Request`s for one served model."""

    def __init__(self, engine, model_name: str, engine_name: str, defaults: Defaults):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.tokens = engine.format_tokens
        self.model_name = model_name
        self.engine_name = engine_name
        self.defaults = defaults
        self.vocab = len(engine.tokenizer)

    def _common(self, body: _Body) -> Sampling:
        if body.model not in (None, "", self.model_name):
            raise BadRequest(f"Model {body.model!r} is not served here; use {self.model_name!r} (see /v1/models).")
        refuse_unsupported(body, self.engine_name)
        for t in body.stop_token_ids or []:
            self._check_id(t, "stop_token_ids")
        return self.defaults.sampling_for(body)

    def _check_id(self, token, where: str) -> None:
        if not 0 <= token < self.vocab:
            raise BadRequest(
                f"{where} holds token id {token}, outside this model's vocabulary (0 to {self.vocab - 1})."
            )

    def forcing(self, body: _Body, max_tokens: int | None, max_thinking: int | None) -> BudgetForcing:
        return self.defaults.forcing_for(body, max_tokens, max_thinking)

    def _jobs(
        self,
        body: _Body,
        prompts: list[tuple[str, list[int]]],
        forcing: BudgetForcing,
        sampling: Sampling,
        plain: bool,
        logprobs: int | None,
        prompt_logprobs: int | None,
    ) -> list[Job]:
        stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        stream = Stream(
            stop=stop, include_stop=body.include_stop_str_in_output, skip_special_tokens=body.skip_special_tokens
        )
        jobs = []
        for p, (text, ids) in enumerate(prompts):
            for j in range(body.n):
                # n samples of one seeded request differ (greedy ones are equal)
                s = Sampling(sampling.temperature, sampling.top_p, derive_seed(sampling.seed, j))
                request = prepare_ids(
                    self.tokens,
                    self.engine.context_length,
                    text,
                    ids,
                    forcing,
                    s,
                    plain=plain,
                    stop_token_ids=frozenset(body.stop_token_ids or ()),
                    logprobs=logprobs,
                    prompt_logprobs=prompt_logprobs,
                    min_tokens=body.min_tokens,
                )
                jobs.append(Job(index=len(jobs), request=request, stream=stream, prompt_index=p))
        return jobs

    def chat(self, body: ChatBody) -> list[Job]:
        sampling = self._common(body)
        max_thinking = body.max_thinking_tokens
        if max_thinking is None and body.reasoning_effort is not None:
            max_thinking = self._effort(body.reasoning_effort)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
        prompt = render_messages(self.tokenizer, messages, self.tokens.fmt)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        if max_tokens == 0:
            raise BadRequest("max_tokens must be at least 1.")
        forcing = self.forcing(body, max_tokens, max_thinking)
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        return self._jobs(body, [(prompt, encode(self.tokenizer, prompt))], forcing, sampling, False, logprobs, None)

    def _effort(self, effort: str) -> int:
        caps = {"none": 0, **self.defaults.reasoning_effort_caps}
        if effort not in caps:
            raise BadRequest(f"reasoning_effort must be one of {', '.join(caps)}, got {effort!r}.")
        return caps[effort]

    def completion(self, body: CompletionBody) -> list[Job]:
        sampling = self._common(body)
        prompts = self._prompts(body.prompt)
        if body.max_tokens == 0 and not body.echo:
            raise BadRequest("max_tokens must be at least 1 (0 only with echo, to score the prompt).")
        forced = body.budget_forcing
        if forced is None:
            asked = any(getattr(body, f) is not None for f in BUDGET_FIELDS)
            forced = asked or all(self._inside_thinking(text) for text, _ in prompts)
        if forced:
            if body.echo or body.logprobs is not None:
                raise BadRequest(
                    "echo and logprobs score plain continuations; drop the budget fields or set budget_forcing: false."
                )
            prompts = [self._open(text, ids) for text, ids in prompts]
            forcing = self.forcing(body, body.max_tokens, body.max_thinking_tokens)
            return self._jobs(body, prompts, forcing, sampling, False, None, None)
        if any(getattr(body, f) is not None for f in BUDGET_FIELDS):
            raise BadRequest("budget_forcing: false cannot be combined with budget fields; remove one of them.")
        limit = self.defaults.plain_max_tokens(body)
        forcing = BudgetForcing(max_answer_tokens=max(limit, 1), max_tokens=limit)
        k = body.logprobs
        return self._jobs(body, prompts, forcing, sampling, True, k, k if body.echo and k is not None else None)

    def _prompts(self, prompt) -> list[tuple[str, list[int]]]:
        """vLLM's four prompt forms: a string, a list of strings, token ids, a list of token-id lists."""
        if isinstance(prompt, str) or (prompt and all(isinstance(t, int) for t in prompt)):
            prompt = [prompt]
        if not prompt:
            raise BadRequest("The prompt is empty; send text or token ids.")
        if len(prompt) > MAX_PROMPTS:
            raise BadRequest(f"At most {MAX_PROMPTS} prompts per request; split the batch.")
        out = []
        for p in prompt:
            if isinstance(p, str):
                if not p:
                    raise BadRequest("A prompt is empty; send text or token ids.")
                out.append((p, encode(self.tokenizer, p)))
            else:
                if not p:
                    raise BadRequest("A prompt is an empty list of token ids.")
                for t in p:
                    self._check_id(t, "prompt")
                out.append((self.tokenizer.decode(p, skip_special_tokens=False), list(p)))
        return out

    def _inside_thinking(self, text: str) -> bool:
        """Whether the prompt ends inside an open thinking block (its last thinking start is not closed)."""
        fmt = self.tokens.fmt
        start = text.rfind(fmt.think_start.strip())
        return start >= 0 and text.rfind(fmt.think_end) < start

    def _open(self, text: str, ids: list[int]) -> tuple[str, list[int]]:
        if self._inside_thinking(text):
            return text, ids
        opened = open_thinking(text, self.tokens.fmt)
        return opened, ids + encode(self.tokenizer, opened[len(text) :])


def usage(completions: list[Completion], prompt_tokens: int) -> dict:
    generated = sum(len(c.output_token_ids) for c in completions)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": generated,
        "total_tokens": prompt_tokens + generated,
        "completion_tokens_details": {"reasoning_tokens": sum(c.thinking_tokens for c in completions)},
    }


def s1_fields(c: Completion) -> dict:
    return {
        "thinking_tokens": c.thinking_tokens,
        "answer_tokens": c.answer_tokens,
        "extensions_used": c.extensions_used,
        "capped": c.capped,
    }


def legacy_logprobs(tokenizer, ids: list[int], entries: list, offset: int = 0) -> dict:
    """The completions endpoint's logprobs object: tokens, token_logprobs, top_logprobs, text_offset."""
    tokens, lps, tops, offsets = [], [], [], []
    position = offset
    for token, entry in zip(ids, entries):
        text = tokenizer.decode([token], skip_special_tokens=False)
        tokens.append(text)
        offsets.append(position)
        position += len(text)
        if entry is None:
            lps.append(None)
            tops.append(None)
        else:
            lps.append(entry[0])
            tops.append({tokenizer.decode([t], skip_special_tokens=False): v for t, v in entry[1].items()})
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def chat_logprobs(tokenizer, fmt, c: Completion) -> dict:
    """The chat endpoint's logprobs object for the answer's tokens (after the end-of-thinking delimiter)."""
    out = c.output_token_ids
    end = len(out) - 1 if c.finish_reason == "stop" and c.stop_reason is None and out else len(out)
    start = c.thinking_tokens
    while start < end and fmt.think_end not in tokenizer.decode(
        out[c.thinking_tokens : start + 1], skip_special_tokens=False
    ):
        start += 1
    start += 1
    while start < end and not tokenizer.decode([out[start]], skip_special_tokens=False).strip("\n"):
        start += 1  # the separator's newlines, which `content` does not hold either

    def entry(token: int, logprob: float) -> dict:
        text = tokenizer.decode([token], skip_special_tokens=False)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    content = []
    for token, (logprob, top) in zip(out[start:end], (c.logprobs or [])[start:end]):
        content.append({**entry(token, logprob), "top_logprobs": [entry(t, v) for t, v in top.items()]})
    return {"content": content}
