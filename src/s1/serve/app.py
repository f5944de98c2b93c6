"""`s1 serve`: the OpenAI API as vLLM serves it, with budget forcing in the request body.

Thinking comes back as `reasoning_content` (the convention of vLLM and DeepSeek) and the answer as
`content`. What each field means is in protocol.py and the README. This module runs requests:
submits each choice to the scheduler, streams or collects the results, frees a slot when a client
goes away, logs one line per request and keeps the Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from s1.core.errors import UserError
from s1.serve.protocol import (
    BadRequest,
    ChatBody,
    CompletionBody,
    Defaults,
    Job,
    Translator,
    chat_logprobs,
    legacy_logprobs,
    s1_fields,
    usage,
)

log = logging.getLogger("s1.serve")

__all__ = ["create_app"]


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})


class Metrics:
    """Prometheus text at /metrics, with vLLM's metric names under the `s1:` prefix."""

    def __init__(self, scheduler):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        running = Gauge("s1:num_requests_running", "Sequences being decoded.", registry=self.registry)
        waiting = Gauge("s1:num_requests_waiting", "Sequences waiting for a slot.", registry=self.registry)
        running.set_function(lambda: scheduler.load[0])
        waiting.set_function(lambda: scheduler.load[1])
        self.requests = Counter("s1:requests", "HTTP requests by status code.", ["status"], registry=self.registry)
        self.prompt_tokens = Counter("s1:prompt_tokens", "Prompt tokens processed.", registry=self.registry)
        self.generation_tokens = Counter("s1:generation_tokens", "Tokens generated.", registry=self.registry)
        self.ttft = Histogram(
            "s1:time_to_first_token_seconds",
            "Time to first generated token.",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.latency = Histogram(
            "s1:e2e_request_latency_seconds",
            "Request latency.",
            registry=self.registry,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.recent: deque[tuple[float, int]] = deque()
        rate = Gauge(
            "s1:generation_tokens_per_second", "Tokens generated per second over the last 10 s.", registry=self.registry
        )
        rate.set_function(self._rate)

    def tokens(self, n: int) -> None:
        self.generation_tokens.inc(n)
        now = time.monotonic()
        self.recent.append((now, n))

    def _rate(self) -> float:
        now = time.monotonic()
        while self.recent and self.recent[0][0] < now - 10:
            self.recent.popleft()
        return sum(n for _, n in self.recent) / 10.0

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _StatusCounter:
    """Counts every response by status and logs refusals. Plain ASGI on purpose: Starlette's
    `BaseHTTPMiddleware` (`@app.middleware`) hides a client's disconnect from the endpoint, so a
    non-streaming client that gave up would keep its slot decoding to the end."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.requests.labels(str(status)).inc()
                if status >= 400:
                    log.info("%s %s status=%d", scope["method"], scope["path"], status)
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(
    engine, scheduler, model_name: str, defaults: Defaults | None = None, engine_name: str = "hf"
) -> FastAPI:
    """The ASGI app; `scheduler` runs `engine` behind concurrent requests (see schedulers.py)."""
    defaults = defaults or Defaults()
    app = FastAPI(title="s1 serve")
    tokenizer, fmt = engine.tokenizer, engine.format_tokens.fmt
    translate = Translator(engine, model_name, engine_name, defaults)
    metrics = Metrics(scheduler)

    app.add_middleware(_StatusCounter, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return _error(400, "The request body is not valid JSON.")
        extra = [
            ".".join(str(p) for p in e["loc"] if p != "body") for e in errors if e.get("type") == "extra_forbidden"
        ]
        if extra:
            return _error(
                400,
                f"Unsupported field {extra[0]!r}: s1 serve does not implement it; remove it (the README lists every field).",
            )
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"Invalid request: {where + ': ' if where else ''}{first.get('msg', 'malformed body')}.")

    @app.exception_handler(UserError)
    async def _user_error(request, exc: UserError):
        return _error(400, str(exc))

    @app.exception_handler(BadRequest)
    async def _bad(request, exc: BadRequest):
        return _error(400, str(exc))

    async def run(http: HTTPRequest, jobs: list[Job], stream_chunks, respond, kind: str):
        """Submit every choice; stream chunks or answer once all are done; free the slots on disconnect."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        started = time.monotonic()
        first_token = [None]

        def sink_for(job: Job):
            def sink(event):
                loop.call_soon_threadsafe(events.put_nowait, (job.index, event))

            return sink

        rids = [scheduler.submit(job.request, sink_for(job), job.stream) for job in jobs]
        metrics.prompt_tokens.inc(sum(len(j.request.prompt_token_ids) for j in jobs))

        def cancel_all():
            for rid in rids:
                scheduler.cancel(rid)  # a no-op once finished

        checked = [time.monotonic()]

        async def next_event():
            """The next event of any choice; a client that went away (checked every second) cancels them all."""
            while True:
                if time.monotonic() - checked[0] > 1.0:
                    checked[0] = time.monotonic()
                    if await http.is_disconnected():
                        raise asyncio.CancelledError
                try:
                    index, event = await asyncio.wait_for(events.get(), timeout=1.0)
                except TimeoutError:
                    continue
                if event[0] == "delta" and first_token[0] is None:
                    first_token[0] = time.monotonic()
                    metrics.ttft.observe(first_token[0] - started)
                return index, event

        def record(done: dict, status: int) -> None:
            completions = list(done.values())
            generated = sum(len(c.output_token_ids) for c in completions)
            metrics.tokens(generated)
            metrics.latency.observe(time.monotonic() - started)
            log.info(
                "%s %s choices=%d prompt=%d thinking=%d answer=%d latency=%.2fs status=%d",
                kind,
                http.url.path,
                len(jobs),
                sum(len(j.request.prompt_token_ids) for j in jobs),
                sum(c.thinking_tokens for c in completions),
                sum(c.answer_tokens for c in completions),
                time.monotonic() - started,
                status,
            )

        done: dict = {}
        texts: dict = {}
        if stream_chunks is None:
            try:
                while len(done) < len(jobs):
                    index, event = await next_event()
                    if event[0] == "error":
                        cancel_all()
                        record(done, 500)
                        return _error(500, event[1], "server_error")
                    if event[0] == "done":
                        done[index], texts[index] = event[1], event[2]
            except asyncio.CancelledError:
                cancel_all()
                raise
            record(done, 200)
            return JSONResponse(respond([done[j.index] for j in jobs], [texts[j.index] for j in jobs]))

        async def body():
            status = 200
            try:
                for chunk in stream_chunks(None, None):
                    yield f"data: {json.dumps(chunk)}\n\n"
                while len(done) < len(jobs):
                    index, event = await next_event()
                    if event[0] == "error":
                        status = 500
                        yield f"data: {json.dumps({'error': {'message': event[1], 'type': 'server_error', 'code': 500}})}\n\n"
                        break
                    if event[0] == "done":
                        done[index] = event[1]
                    for chunk in stream_chunks(index, event):
                        yield f"data: {json.dumps(chunk)}\n\n"
                if status == 200:
                    for chunk in stream_chunks("end", list(done.values())):
                        yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                cancel_all()
                record(done, status)

        return StreamingResponse(body(), media_type="text/event-stream")

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [
                {
                    "id": model_name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "s1",
                    "max_model_len": engine.context_length,
                }
            ],
        }

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def prompt_tokens(jobs: list[Job]) -> int:
        seen = {}
        for j in jobs:
            seen[j.prompt_index] = len(j.request.prompt_token_ids)
        return sum(seen.values())

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody, http: HTTPRequest):
        jobs = translate.chat(body)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": cid, "created": created, "model": model_name}
        include_usage = body.stream_options is not None and body.stream_options.include_usage

        def respond(completions, _texts) -> dict:
            choices = []
            for job, c in zip(jobs, completions):
                message = {"role": "assistant", "content": c.answer, "reasoning_content": c.thinking}
                choice = {
                    "index": job.index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": c.finish_reason,
                    "stop_reason": c.stop_reason,
                    "s1": s1_fields(c),
                }
                if body.logprobs:
                    choice["logprobs"] = chat_logprobs(tokenizer, fmt, c)
                choices.append(choice)
            return {
                **head,
                "object": "chat.completion",
                "choices": choices,
                "usage": usage(completions, prompt_tokens(jobs)),
                "s1": s1_fields(completions[0]),
            }

        def chunks(index, event):
            chunk = {**head, "object": "chat.completion.chunk", **({"usage": None} if include_usage else {})}
            if index is None:
                return [
                    {
                        **chunk,
                        "choices": [
                            {
                                "index": j.index,
                                "delta": {"role": "assistant", "content": ""},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                    }
                    for j in jobs
                ]
            if index == "end":
                return [{**chunk, "choices": [], "usage": usage(event, prompt_tokens(jobs))}] if include_usage else []
            if event[0] == "delta":
                _, reasoning, content, _ = event
                delta = {
                    **({"reasoning_content": reasoning} if reasoning else {}),
                    **({"content": content} if content else {}),
                }
                return (
                    [{**chunk, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]}]
                    if delta
                    else []
                )
            c = event[1]
            return [
                {
                    **chunk,
                    "choices": [
                        {
                            "index": index,
                            "delta": {},
                            "logprobs": None,
                            "finish_reason": c.finish_reason,
                            "stop_reason": c.stop_reason,
                        }
                    ],
                    "s1": s1_fields(c),
                }
            ]

        return await run(http, jobs, chunks if body.stream else None, respond, "chat")

    @app.post("/v1/completions")
    async def completions(body: CompletionBody, http: HTTPRequest):
        jobs = translate.completion(body)
        cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": cid, "created": created, "model": model_name}
        include_usage = body.stream_options is not None and body.stream_options.include_usage

        def respond(completions, texts) -> dict:
            choices = []
            for job, c, text in zip(jobs, completions, texts):
                r = job.request
                choice = {
                    "index": job.index,
                    "text": (r.prompt if body.echo else "") + text,
                    "logprobs": None,
                    "finish_reason": c.finish_reason,
                    "stop_reason": c.stop_reason,
                }
                if not r.plain:
                    choice.update(reasoning_content=c.thinking, answer=c.answer, s1=s1_fields(c))
                if body.return_token_ids:
                    choice.update(prompt_token_ids=list(r.prompt_token_ids), token_ids=list(c.output_token_ids))
                if body.logprobs is not None:
                    out = c.output_token_ids[: len(c.logprobs or [])]
                    generated = legacy_logprobs(tokenizer, out, c.logprobs or [], len(r.prompt) if body.echo else 0)
                    if body.echo:
                        scored = legacy_logprobs(tokenizer, r.prompt_token_ids, c.prompt_logprobs or [])
                        generated = {k: scored[k] + generated[k] for k in generated}
                    choice["logprobs"] = generated
                choices.append(choice)
            return {
                **head,
                "object": "text_completion",
                "choices": choices,
                "usage": usage(completions, prompt_tokens(jobs)),
            }

        def chunks(index, event):
            chunk = {**head, "object": "text_completion", **({"usage": None} if include_usage else {})}
            if index is None:
                return []
            if index == "end":
                return [{**chunk, "choices": [], "usage": usage(event, prompt_tokens(jobs))}] if include_usage else []
            if event[0] == "delta":
                raw = event[3]
                return (
                    [{**chunk, "choices": [{"index": index, "text": raw, "logprobs": None, "finish_reason": None}]}]
                    if raw
                    else []
                )
            c = event[1]
            return [
                {
                    **chunk,
                    "choices": [
                        {
                            "index": index,
                            "text": "",
                            "logprobs": None,
                            "finish_reason": c.finish_reason,
                            "stop_reason": c.stop_reason,
                        }
                    ],
                }
            ]

        return await run(http, jobs, chunks if body.stream else None, respond, "completion")

    return app
