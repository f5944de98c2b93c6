"""The OpenAI API as vLLM serves it: the request bodies `s1 serve` takes, and the server's defaults.

Field names and defaults follow OpenAI's and vLLM's, so existing clients (the openai SDK, litellm, inspect-ai,
lm-evaluation-harness) work unchanged, and as vLLM does: a field the server does not know is ignored (logged,
and named in the `X-S1-Ignored-Fields` response header), `null` means absent, and a field it knows but cannot
honour at the value given is a 400 naming it (`UNHONOURED`). The thinking budget is taken under every name
clients use (`THINKING_ALIASES`, `reasoning_effort`, `thinking`, `chat_template_kwargs.enable_thinking`) and
mapped onto the one `BudgetForcing`. What a body means as s1 `Request`s is in translate.py; what the server
answers, in responses.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from s1.core.forcing import BudgetForcing
from s1.core.sampling import Sampling
from s1.core.settings import Declared, declared, element
from s1.serve.tools import template_message

FORCING = declared(BudgetForcing)
SAMPLING = declared(Sampling)
BUDGET_FIELDS = tuple(d.name for d in FORCING if d.name != "max_tokens")
"""Fields that ask for budget forcing (a completions request that sets one is forced); max_tokens is OpenAI's."""
THINKING_ALIASES = ("thinking_token_budget", "thinking_budget_tokens")
"""Other engines' names for the thinking cap: vLLM's `thinking_token_budget`, llama.cpp's `thinking_budget_tokens`
(-1 means no cap, as there); both mean s1's `max_thinking_tokens`."""
EFFORTS = ("minimal", "low", "medium", "high", "xhigh", "max")
"""`reasoning_effort` levels (vLLM's ladder); `none` is no thinking. Each maps to a cap (`--reasoning-effort-caps`)."""
DEFAULT_EFFORT_CAPS = {"minimal": 128, "low": 512, "medium": 2048, "high": 8192, "xhigh": 16384, "max": 32768}
MAX_N = 16
MAX_PROMPTS = 256
MAX_LOGPROBS = 20
PLAIN_MAX_TOKENS = 16
"""A plain completion's default length, as OpenAI's legacy API and vLLM's completions endpoint."""

REFUSED = object()
"""In `UNHONOURED`: no value is neutral, the field must be absent (or null)."""
UNHONOURED: dict[str, Any] = {
    "repeat_penalty": 1.0,  # llama.cpp's name for repetition_penalty, which is honoured under vLLM's name
    "ignore_eos": False,
    "use_beam_search": False,
    "logit_bias": {},
    "bad_words": [],
    "logits_processors": [],
    "guided_json": REFUSED,
    "guided_regex": REFUSED,
    "guided_choice": REFUSED,
    "guided_grammar": REFUSED,
    "structured_outputs": REFUSED,
    "allowed_token_ids": REFUSED,
    "prompt_logprobs": REFUSED,
    "truncate_prompt_tokens": REFUSED,
    "continue_final_message": False,
    "add_generation_prompt": True,
    "previous_response_id": REFUSED,
    "background": False,
}
"""Fields vLLM or OpenAI define that change what is generated and that s1 serve does not implement: accepted at
the neutral value given here (`REFUSED`: only absent or null), a 400 naming the field otherwise. Unlike an
unknown field, ignoring one of these would return something other than what the client asked for."""


class BadRequest(Exception):
    """A request the server will not run; the message is the one sentence the client gets with its 400, `param`
    the field it is about (OpenAI's error `param`) where there is one."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class Open(BaseModel):
    """A request object as vLLM reads it: fields it does not know are kept aside (not refused) and reported by
    `ignored()`, and `null` means the field is absent (its default applies)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data):
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    def ignored(self, prefix: str = "") -> list[str]:
        """Names of the fields this object (and the objects in it) ignored, as dotted paths."""
        names = [prefix + k for k in self.model_extra or {} if k not in UNHONOURED]
        for name in type(self).model_fields:
            value = getattr(self, name)
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, Open):
                    where = f"{prefix}{name}[{i}]." if isinstance(value, list) else f"{prefix}{name}."
                    names += item.ignored(where)
        return names

    def unhonoured(self) -> dict[str, Any]:
        """Fields of `UNHONOURED` this request sets."""
        return {k: v for k, v in (self.model_extra or {}).items() if k in UNHONOURED}


@dataclass
class Defaults:
    """Server-wide settings for requests that carry none (`s1 serve --max-thinking-tokens ...`): a request's
    field that is absent (or null) takes its value from these, field by field."""

    forcing: BudgetForcing = BudgetForcing()
    sampling: Sampling = Sampling()
    reasoning_effort_caps: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_EFFORT_CAPS))

    def forcing_for(self, body: _Body, max_tokens: int | None, max_thinking: int | None) -> BudgetForcing:
        """A request's budget: each field it sets, these defaults for each it does not. `max_tokens` and
        `max_thinking` are the request's own after its endpoint's aliases (max_completion_tokens,
        thinking_token_budget, reasoning_effort ...)."""
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


_Settings = create_model("_Settings", __base__=Open, **{d.name: _request_field(d) for d in FORCING + SAMPLING})
"""Budget forcing (s1's fields, and OpenAI's max_tokens) and sampling: the request fields declared on
`BudgetForcing` and `Sampling`, with their names, types and ranges."""


class StreamOptions(Open):
    include_usage: bool = False


class Thinking(Open):
    """Anthropic's `thinking` (what litellm passes on for `thinking=`): enabled with a budget, or disabled."""

    type: Literal["enabled", "disabled", "adaptive"] = "enabled"
    budget_tokens: int | None = Field(default=None, ge=0)


class _Thinking(_Settings):
    """The thinking controls every generating endpoint takes, besides s1's own `max_thinking_tokens`."""

    thinking_token_budget: int | None = Field(default=None, ge=-1)
    thinking_budget_tokens: int | None = Field(default=None, ge=-1)
    thinking: Thinking | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    include_reasoning: bool = True
    """vLLM's: false leaves the thinking out of the response (the model still thinks)."""


class _Body(_Thinking):
    """Fields both endpoints take."""

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


class TextPart(Open):
    type: Literal["text", "input_text", "output_text"]
    text: str


class Message(Open):
    """One chat message. An assistant message may carry its reasoning back (`reasoning_content`, or vLLM's newer
    `reasoning`), as a client that appends the reply it got sends it; the chat template decides what of it to
    render (most drop the reasoning of past turns)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] = ""
    name: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict] = Field(default_factory=list)
    """An assistant message's calls, as the server returned them (an agent loop appends the reply)."""
    tool_call_id: str | None = None
    """A `tool` message's answer to that call."""

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def for_template(self) -> dict:
        """The message as chat templates read it: system for developer, and the reasoning under both names."""
        out = {"role": "system" if self.role == "developer" else self.role, "content": self.text()}
        reasoning = self.reasoning_content if self.reasoning_content is not None else self.reasoning
        if self.role == "assistant" and reasoning is not None:
            out.update(reasoning_content=reasoning, reasoning=reasoning)
        return template_message(out, self.tool_calls, self.tool_call_id)


class ChatBody(_Body):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    response_format: dict | None = None
    tools: list | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    """Passed to the chat template (vLLM's); `enable_thinking: false` also means no thinking."""


class ReasoningParam(Open):
    """The Responses API's `reasoning`: its `effort` is `reasoning_effort`; summaries are not written."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: str | None = None


class InputItem(Open):
    """One item of a Responses API `input`: a message (text or text parts), or a reasoning item a client replays
    (its text goes back to the next assistant message, for the chat template to render or drop)."""

    type: str = "message"
    role: Literal["system", "developer", "user", "assistant"] | None = None
    content: str | list[TextPart | ReasoningText] = ""
    summary: list[ReasoningText] = Field(default_factory=list)
    id: str | None = None
    status: str | None = None
    encrypted_content: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ReasoningText(Open):
    type: Literal["reasoning_text", "summary_text"]
    text: str


class ResponsesBody(_Thinking):
    """POST /v1/responses, text in and text out (OpenAI's Responses API as vLLM serves it)."""

    model: str | None = None
    input: str | list[InputItem]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    reasoning: ReasoningParam | None = None
    text: dict | None = None
    tools: list | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None


InputItem.model_rebuild()
