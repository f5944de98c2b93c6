"""The OpenAI API as vLLM serves it: the request bodies `s1 serve` takes, and the server's defaults.

Field names and defaults follow OpenAI's and vLLM's, so existing clients (the openai SDK, litellm,
lm-evaluation-harness) work unchanged. A field s1 does not implement is refused with a 400 naming it
rather than silently ignored; neutral values of such fields (a penalty of 0, `top_k` -1) are accepted.
What a body means as s1 `Request`s is in translate.py; what the server answers, in responses.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from s1.core.sampling import SEED_LIMIT

BUDGET_FIELDS = (
    "max_thinking_tokens",
    "min_thinking_tokens",
    "num_ignore",
    "extensions",
    "answer_prefix",
    "max_answer_tokens",
)
MAX_N = 16
MAX_PROMPTS = 256
MAX_LOGPROBS = 20
PLAIN_MAX_TOKENS = 16
"""A plain completion's default length, as OpenAI's legacy API and vLLM's completions endpoint."""


class BadRequest(Exception):
    """A request the server will not run; the message is the one sentence the client gets with its 400."""


@dataclass
class Defaults:
    """Server-wide settings for requests that carry none (`s1 serve --max-thinking-tokens ...`)."""

    max_answer_tokens: int = 1024
    temperature: float = 0.0
    answer_prefix: str = "Final Answer:"
    max_thinking_tokens: int | None = None
    num_ignore: int = 0
    extensions: tuple[str, ...] = ("Wait",)
    reasoning_effort_caps: dict[str, int] = field(default_factory=lambda: {"low": 512, "medium": 2048, "high": 8192})


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Body(BaseModel):
    """Fields both endpoints take. Unknown fields are refused (extra="forbid")."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, lt=SEED_LIMIT)
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
    # budget forcing (s1)
    max_thinking_tokens: int | None = Field(default=None, ge=0)
    min_thinking_tokens: int | None = Field(default=None, ge=0)
    num_ignore: int | None = Field(default=None, ge=0)
    extensions: list[str] | str | None = None
    answer_prefix: str | None = None
    max_answer_tokens: int | None = Field(default=None, ge=1)
    budget_forcing: bool | None = None


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
