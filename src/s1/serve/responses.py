"""What `s1 serve` answers, as pydantic models: the OpenAI/vLLM response objects plus s1's own fields.

Every field clients see is declared here once. OpenAI leaves some keys out rather than sending null
(a stream's `usage` unless `stream_options.include_usage`, `stop_reason` before a choice's last chunk,
the completions fields of plain continuations), and clients check for presence: such fields default
to pydantic's `MISSING` and are left out of the JSON unless set. `body()` is the JSON-ready dict.
"""

from __future__ import annotations

from typing import Literal

from fastapi.responses import JSONResponse
from pydantic import MISSING, BaseModel

from s1.engines.base import Completion


class Shape(BaseModel):
    def body(self) -> dict:
        return self.model_dump()

    def response(self) -> JSONResponse:
        return JSONResponse(self.body())


# -- shared pieces ---------------------------------------------------------------------------------
class S1Fields(Shape):
    """s1's budget-forcing account of one choice (`s1` on choices and responses)."""

    thinking_tokens: int
    answer_tokens: int
    extensions_used: int
    capped: bool

    @classmethod
    def of(cls, c: Completion) -> S1Fields:
        return cls(
            thinking_tokens=c.thinking_tokens,
            answer_tokens=c.answer_tokens,
            extensions_used=c.extensions_used,
            capped=c.capped,
        )


class TokenDetails(Shape):
    reasoning_tokens: int


class Usage(Shape):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: TokenDetails

    @classmethod
    def of(cls, completions: list[Completion], prompt_tokens: int) -> Usage:
        generated = sum(len(c.output_token_ids) for c in completions)
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=generated,
            total_tokens=prompt_tokens + generated,
            completion_tokens_details=TokenDetails(reasoning_tokens=sum(c.thinking_tokens for c in completions)),
        )


class ErrorInfo(Shape):
    message: str
    type: str
    code: int


class ErrorResponse(Shape):
    error: ErrorInfo


def error_response(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(status, message, kind))


def error_body(status: int, message: str, kind: str = "invalid_request_error") -> dict:
    return ErrorResponse(error=ErrorInfo(message=message, type=kind, code=status)).body()


# -- chat ------------------------------------------------------------------------------------------
class TopLogprob(Shape):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(Shape):
    content: list[TokenLogprob]


class ChatMessage(Shape):
    role: Literal["assistant"] = "assistant"
    content: str
    reasoning_content: str


class ChatChoice(Shape):
    index: int
    message: ChatMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str
    stop_reason: int | str | None
    s1: S1Fields


class ChatCompletion(Shape):
    id: str
    created: int
    model: str
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage
    s1: S1Fields
    """The first choice's account, for clients that read one choice."""


class ChatDelta(Shape):
    role: Literal["assistant"] | MISSING = MISSING
    reasoning_content: str | MISSING = MISSING
    content: str | MISSING = MISSING


class ChatChunkChoice(Shape):
    index: int
    delta: ChatDelta
    logprobs: None = None
    finish_reason: str | None = None
    stop_reason: int | str | None | MISSING = MISSING


class ChatCompletionChunk(Shape):
    id: str
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: Usage | None | MISSING = MISSING
    choices: list[ChatChunkChoice]
    s1: S1Fields | MISSING = MISSING


# -- completions -----------------------------------------------------------------------------------
class LegacyLogprobs(Shape):
    """The completions endpoint's logprobs object, one entry per token in each list."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]

    def __add__(self, other: LegacyLogprobs) -> LegacyLogprobs:
        return LegacyLogprobs(**{k: getattr(self, k) + getattr(other, k) for k in type(self).model_fields})


class CompletionChoice(Shape):
    index: int
    text: str
    logprobs: LegacyLogprobs | None = None
    finish_reason: str
    stop_reason: int | str | None
    reasoning_content: str | MISSING = MISSING
    answer: str | MISSING = MISSING
    s1: S1Fields | MISSING = MISSING
    prompt_token_ids: list[int] | MISSING = MISSING
    token_ids: list[int] | MISSING = MISSING


class TextCompletion(Shape):
    id: str
    created: int
    model: str
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunkChoice(Shape):
    index: int
    text: str
    logprobs: None = None
    finish_reason: str | None = None
    stop_reason: int | str | None | MISSING = MISSING


class CompletionChunk(Shape):
    id: str
    created: int
    model: str
    object: Literal["text_completion"] = "text_completion"
    usage: Usage | None | MISSING = MISSING
    choices: list[CompletionChunkChoice]


# -- models and health -----------------------------------------------------------------------------
class ModelCard(Shape):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "s1"
    max_model_len: int


class ModelList(Shape):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(Shape):
    status: Literal["ok"] = "ok"


# -- logprobs from the engine's records ------------------------------------------------------------
def legacy_logprobs(tokenizer, ids: list[int], entries: list, offset: int = 0) -> LegacyLogprobs:
    """Per token: its text, logprob, the top tokens' logprobs and where its text starts (None entries:
    the first prompt token, which nothing predicts)."""
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
    return LegacyLogprobs(tokens=tokens, token_logprobs=lps, top_logprobs=tops, text_offset=offsets)


def chat_logprobs(tokenizer, fmt, c: Completion) -> ChatLogprobs:
    """The chat endpoint's logprobs for the answer's tokens (after the end-of-thinking delimiter)."""
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

    def entry(token: int, logprob: float) -> TopLogprob:
        text = tokenizer.decode([token], skip_special_tokens=False)
        return TopLogprob(token=text, logprob=logprob, bytes=list(text.encode()))

    content = [
        TokenLogprob(**entry(token, logprob).body(), top_logprobs=[entry(t, v) for t, v in top.items()])
        for token, (logprob, top) in zip(out[start:end], (c.logprobs or [])[start:end])
    ]
    return ChatLogprobs(content=content)
