"""`s1 serve`: an OpenAI-compatible HTTP server whose requests carry budget-forcing fields.

Thinking comes back as `reasoning_content` (the convention of vLLM and DeepSeek) and the answer as
`content`; usage counts thinking tokens as `reasoning_tokens`. Extra body fields: `max_thinking_tokens`,
`min_thinking_tokens`, `num_ignore`, `extensions`, `answer_prefix`; `max_tokens` bounds the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .engines.base import Completion, Sampling, prepare
from .errors import UserError
from .forcing import BudgetForcing
from .formats import open_thinking, render_messages


class _Budget(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stream: bool = False
    n: int = 1
    max_thinking_tokens: int | None = None
    min_thinking_tokens: int = 0
    num_ignore: int = 0
    extensions: list[str] | str | None = None
    answer_prefix: str | None = None


class CompletionBody(_Budget):
    prompt: str | list[int]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str


class ChatBody(_Budget):
    messages: list[Message] = Field(min_length=1)


@dataclass
class Defaults:
    max_answer_tokens: int = 1024
    temperature: float = 0.0
    answer_prefix: str = "Final Answer:"


class BadRequest(Exception):
    pass


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})


def create_app(engine, scheduler, model_name: str, defaults: Defaults | None = None) -> FastAPI:
    """The ASGI app; `scheduler` runs `engine` behind concurrent requests (see schedulers.py)."""
    defaults = defaults or Defaults()
    app = FastAPI(title="s1 serve")
    tokenizer, tokens = engine.tokenizer, engine.format_tokens

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "json_invalid":
            return _error(400, "The request body is not valid JSON.")
        return _error(400, f"Invalid request: {where + ': ' if where else ''}{first.get('msg', 'malformed body')}.")

    @app.exception_handler(UserError)
    async def _user_error(request, exc: UserError):
        return _error(400, str(exc))

    @app.exception_handler(BadRequest)
    async def _bad(request, exc: BadRequest):
        return _error(400, str(exc))

    def settings(body: _Budget) -> tuple[BudgetForcing, Sampling]:
        if body.model not in (None, "", model_name):
            raise BadRequest(f"Model {body.model!r} is not served here; use {model_name!r} (see /v1/models).")
        if body.n != 1:
            raise BadRequest("Only n=1 is supported; send several requests for several samples.")
        extensions = [body.extensions] if isinstance(body.extensions, str) else body.extensions
        forcing = BudgetForcing(
            max_thinking_tokens=body.max_thinking_tokens,
            min_thinking_tokens=body.min_thinking_tokens,
            num_ignore=body.num_ignore,
            extensions=tuple(extensions) if extensions else ("Wait",),
            answer_prefix=defaults.answer_prefix if body.answer_prefix is None else body.answer_prefix,
            max_answer_tokens=body.max_completion_tokens or body.max_tokens or defaults.max_answer_tokens,
        )
        sampling = Sampling(
            temperature=defaults.temperature if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            seed=body.seed,
        )
        return forcing, sampling

    async def run(http: HTTPRequest, request, stream_chunk, final) -> Any:
        """Submit, then either stream chunks or wait for the whole completion; free the slot on disconnect."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        rid = scheduler.submit(request, lambda event: loop.call_soon_threadsafe(events.put_nowait, event))

        async def next_event():
            while True:
                try:
                    return await asyncio.wait_for(events.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    if await http.is_disconnected():
                        raise asyncio.CancelledError

        if not stream_chunk:
            try:
                while True:
                    event = await next_event()
                    if event[0] == "done":
                        return JSONResponse(final(event[1]))
                    if event[0] == "error":
                        return _error(500, event[1], "server_error")
            except asyncio.CancelledError:
                scheduler.cancel(rid)
                raise

        async def body():
            try:
                for chunk in stream_chunk(None):
                    yield f"data: {json.dumps(chunk)}\n\n"
                while True:
                    event = await next_event()
                    if event[0] == "error":
                        yield f"data: {json.dumps({'error': {'message': event[1], 'type': 'server_error'}})}\n\n"
                        break
                    for chunk in stream_chunk(event):
                        yield f"data: {json.dumps(chunk)}\n\n"
                    if event[0] == "done":
                        break
                yield "data: [DONE]\n\n"
            finally:
                scheduler.cancel(rid)  # a no-op once finished; frees the slot if the client went away

        return StreamingResponse(body(), media_type="text/event-stream")

    def usage(c: Completion) -> dict:
        return {
            "prompt_tokens": len(c.prompt_token_ids),
            "completion_tokens": len(c.output_token_ids),
            "total_tokens": len(c.prompt_token_ids) + len(c.output_token_ids),
            "completion_tokens_details": {"reasoning_tokens": c.thinking_tokens},
        }

    def s1_fields(c: Completion) -> dict:
        return {"thinking_tokens": c.thinking_tokens, "answer_tokens": c.answer_tokens,
                "extensions_used": c.extensions_used, "capped": c.capped}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "s1"}]}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody, http: HTTPRequest):
        forcing, sampling = settings(body)
        prompt = render_messages(tokenizer, [m.model_dump() for m in body.messages], tokens.fmt)
        request = prepare(tokenizer, tokens, engine.context_length, prompt, forcing, sampling)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": cid, "created": created, "model": model_name}

        def final(c: Completion) -> dict:
            message = {"role": "assistant", "content": c.answer, "reasoning_content": c.thinking}
            return {**head, "object": "chat.completion", "usage": usage(c), "s1": s1_fields(c),
                    "choices": [{"index": 0, "message": message, "finish_reason": c.finish_reason}]}

        def chunks(event):
            chunk = {**head, "object": "chat.completion.chunk"}
            if event is None:
                return [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
            if event[0] == "delta":
                _, reasoning, content, _ = event
                delta = {**({"reasoning_content": reasoning} if reasoning else {}), **({"content": content} if content else {})}
                return [{**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}] if delta else []
            c = event[1]
            return [{**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": c.finish_reason}], "usage": usage(c), "s1": s1_fields(c)}]

        return await run(http, request, chunks if body.stream else None, final)

    @app.post("/v1/completions")
    async def completions(body: CompletionBody, http: HTTPRequest):
        forcing, sampling = settings(body)
        prompt = body.prompt if isinstance(body.prompt, str) else tokenizer.decode(body.prompt)
        if not prompt.strip():
            raise BadRequest("The prompt is empty.")
        request = prepare(tokenizer, tokens, engine.context_length, open_thinking(prompt, tokens.fmt), forcing, sampling)
        cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": cid, "created": created, "model": model_name}

        def text(c: Completion) -> str:
            ids = c.output_token_ids[:-1] if c.finish_reason == "stop" else c.output_token_ids
            return tokenizer.decode(ids, skip_special_tokens=False)

        def final(c: Completion) -> dict:
            choice = {"index": 0, "text": text(c), "reasoning_content": c.thinking, "answer": c.answer, "finish_reason": c.finish_reason}
            return {**head, "object": "text_completion", "choices": [choice], "usage": usage(c), "s1": s1_fields(c)}

        def chunks(event):
            chunk = {**head, "object": "text_completion"}
            if event is None:
                return []
            if event[0] == "delta":
                raw = event[3]
                return [{**chunk, "choices": [{"index": 0, "text": raw, "finish_reason": None}]}] if raw else []
            c = event[1]
            return [{**chunk, "choices": [{"index": 0, "text": "", "finish_reason": c.finish_reason}], "usage": usage(c), "s1": s1_fields(c)}]

        return await run(http, request, chunks if body.stream else None, final)

    return app
