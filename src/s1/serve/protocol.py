"""The OpenAI API as vLLM serves it: the request bodies `s1 serve` takes, and the server's defaults.

Field names and defaults follow OpenAI's and vLLM's, so existing clients (the openai SDK, litellm,
lm-evaluation-harness) work unchanged. A field s1 does not implement is refused with a 400 naming it
rather than silently ignored; neutral values of such fields (a penalty of 0, `top_k` -1) are accepted.
What a body means as s1 `Request`s is in translate.py; what the server answers, in responses.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from s1.core.forcing import BudgetForcing
from s1.core.sampling import Sampling
from s1.core.settings import Declared, declared, element

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
