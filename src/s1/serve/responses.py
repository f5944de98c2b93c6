"""What `s1 serve` answers, as pydantic models: the OpenAI/vLLM response objects plus s1's own fields.

Every field clients see is declared here once. OpenAI leaves some keys out rather than sending null
(a stream's `usage` unless `stream_options.include_usage`, `stop_reason` before a choice's last chunk,
the completions fields of plain continuations), and clients check for presence: such fields default
to pydantic's `MISSING` and are left out of the JSON unless set. `body()` is the JSON-ready dict.

One concern, so one module past 400 lines: the shape of every response object the server sends.
"""

from __future__ import annotations

from typing import Literal

from fastapi.responses import JSONResponse
from pydantic import MISSING, BaseModel

from s1.engines.base import Completion


class Piece(BaseModel):
    """Any object the server writes: `body()` is its JSON-ready dict."""

    def body(self) -> dict:
        return self.model_dump()


class Shape(Piece):
    """An object that can be a whole response."""

    def response(self) -> JSONResponse:
        return JSONResponse(self.body())


# -- shared pieces ---------------------------------------------------------------------------------
class S1Fields(Shape):
    """s1's budget-forcing account of one choice (`s1` on choices and responses)."""

    thinking_tokens: int
    answer_tokens: int
    extensions_used: int
    capped: bool
    note: str | MISSING = MISSING
    """Why the reply looks as it does where a client may not expect it (max_tokens that ended it in thinking)."""

    @classmethod
    def of(cls, c: Completion, max_tokens: int | None = None) -> S1Fields:
        fields = {}
        if cut_in_thinking(c, max_tokens):
            fields["note"] = (
                f"max_tokens ({max_tokens}) ended this reply before the model wrote its answer: max_tokens counts the "
                f"thinking ({c.thinking_tokens} tokens here) and the end-of-thinking delimiter too, as in vLLM; raise "
                "max_tokens above the thinking cap plus room for the answer, or lower the thinking cap."
            )
        return cls(
            thinking_tokens=c.thinking_tokens,
            answer_tokens=c.answer_tokens,
            extensions_used=c.extensions_used,
            capped=c.capped,
            **fields,
        )


def cut_in_thinking(c: Completion, max_tokens: int | None) -> bool:
    """Whether `max_tokens` ended this completion before any of its answer was written."""
    return (
        max_tokens is not None
        and c.finish_reason == "length"
        and c.answer_tokens == 0
        and len(c.output_token_ids) >= max_tokens
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
    param: str | None = None
    code: int


class ErrorResponse(Shape):
    error: ErrorInfo


def error_response(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, headers=None
) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(status, message, kind, param), headers=headers)


def error_body(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    """OpenAI's error object (as vLLM sends it: `code` is the HTTP status); `param` names the field where known."""
    return ErrorResponse(error=ErrorInfo(message=message, type=kind, param=param or None, code=status)).body()


# -- chat ------------------------------------------------------------------------------------------
class TopLogprob(Shape):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(Shape):
    content: list[TokenLogprob]


class FunctionCall(Shape):
    name: str
    arguments: str
    """The arguments as JSON text, as OpenAI sends them."""


class ToolCall(Shape):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ToolCallDelta(ToolCall):
    """A streamed tool call, whole in one chunk (OpenAI's clients join a call's pieces by `index`)."""

    index: int


class ChatMessage(Shape):
    """The reply: the answer as `content`, the thinking as both `reasoning` (vLLM's name since 2026) and
    `reasoning_content` (its earlier name, DeepSeek's and llama.cpp's), null when not returned; the answer's
    tool calls (serve/tools.py) as `tool_calls`, `content` then holding what is left (null if nothing)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    reasoning: str | None
    reasoning_content: str | None
    tool_calls: list[ToolCall] = []


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
    reasoning: str | MISSING = MISSING
    reasoning_content: str | MISSING = MISSING
    content: str | MISSING = MISSING
    tool_calls: list[ToolCallDelta] | MISSING = MISSING


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
    reasoning: str | None | MISSING = MISSING
    reasoning_content: str | None | MISSING = MISSING
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
    """vLLM's model card: `root` is where the weights came from (the served name is `id`)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "s1"
    root: str
    parent: str | None = None
    max_model_len: int


class ModelList(Shape):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(Shape):
    status: Literal["ok"] = "ok"


class Version(Shape):
    version: str


# -- tokenization (vLLM's /tokenize, /detokenize, /tokenizer_info) ---------------------------------------
class Tokenized(Shape):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class Detokenized(Shape):
    prompt: str


# -- the Responses API ---------------------------------------------------------------------------------
class OutputText(Shape):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list = []
    logprobs: list = []


class ReasoningText(Shape):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ReasoningItem(Shape):
    """The thinking as OpenAI's reasoning item, its text in `content` (as vLLM returns it); no summary."""

    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list = []
    content: list[ReasoningText]
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


class MessageItem(Shape):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    content: list[OutputText]


class InputTokensDetails(Shape):
    cached_tokens: int = 0


class ResponseUsage(Shape):
    input_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int
    output_tokens_details: TokenDetails
    total_tokens: int

    @classmethod
    def of(cls, usage: Usage) -> ResponseUsage:
        return cls(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            output_tokens_details=usage.completion_tokens_details,
            total_tokens=usage.total_tokens,
        )


class IncompleteDetails(Shape):
    reason: Literal["max_output_tokens"] = "max_output_tokens"


class ReasoningSettings(Shape):
    effort: str | None = None
    summary: str | None = None


class ResponseObject(Shape):
    """A `response` object: its output items are the reasoning item (unless not returned) and the message."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    model: str
    status: Literal["in_progress", "completed", "incomplete"]
    incomplete_details: IncompleteDetails | None = None
    error: None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    metadata: dict = {}
    output: list[ReasoningItem | MessageItem] = []
    parallel_tool_calls: bool = False
    previous_response_id: None = None
    reasoning: ReasoningSettings = ReasoningSettings()
    temperature: float
    top_p: float
    text: dict = {"format": {"type": "text"}}
    tool_choice: str = "none"
    tools: list = []
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    s1: S1Fields | MISSING = MISSING


class ResponseEvent(Piece):
    """One server-sent event of a streamed response; `type` names it, as the openai SDK and vLLM do."""

    type: str
    sequence_number: int


class ResponseStateEvent(ResponseEvent):
    """response.created, response.in_progress, response.completed, response.incomplete."""

    response: ResponseObject


class ItemEvent(ResponseEvent):
    """response.output_item.added / .done."""

    output_index: int
    item: ReasoningItem | MessageItem


class PartEvent(ResponseEvent):
    """response.content_part.added / .done."""

    output_index: int
    item_id: str
    content_index: int = 0
    part: ReasoningText | OutputText


class TextDeltaEvent(ResponseEvent):
    """response.reasoning_text.delta and response.output_text.delta (the latter with `logprobs`)."""

    output_index: int
    item_id: str
    content_index: int = 0
    delta: str
    logprobs: list | MISSING = MISSING


class TextDoneEvent(ResponseEvent):
    """response.reasoning_text.done and response.output_text.done (the latter with `logprobs`)."""

    output_index: int
    item_id: str
    content_index: int = 0
    text: str
    logprobs: list | MISSING = MISSING


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


def chat_logprobs(tokenizer, fmt, c: Completion, plain: bool = False) -> ChatLogprobs:
    """The chat endpoint's logprobs for the answer's tokens (after the end-of-thinking delimiter; all of them
    when the reply had no thinking: `plain`)."""
    out = c.output_token_ids
    end = len(out) - 1 if c.finish_reason == "stop" and c.stop_reason is None and out else len(out)
    start = c.thinking_tokens
    while start < end and fmt.think_end not in tokenizer.decode(
        out[c.thinking_tokens : start + 1], skip_special_tokens=False
    ):
        start += 1
    start = 0 if plain else start + 1
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
