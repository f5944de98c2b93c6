"""Running one HTTP request's choices: submit each to the scheduler, then stream chunks as events
arrive or answer once all are done; a client that goes away cancels its choices at once (freeing
their slots), and every request ends with one log line and its metrics.

An endpoint says how events become its objects through a `Reply` (chat.py, completions.py); this
module owns everything else, so both endpoints run, cancel, log and meter the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import ClassVar

from fastapi import Request as HTTPRequest
from fastapi.responses import Response, StreamingResponse

from s1.engines.base import Completion
from s1.serve.responses import Piece, S1Fields, Shape, Usage, cut_in_thinking, error_body, error_response
from s1.serve.schedulers import Delta, Done, Event, Failed
from s1.serve.state import Served
from s1.serve.translate import Job, prompt_tokens

log = logging.getLogger("s1.serve")

DISCONNECT_CHECK_S = 1.0
"""How often a request waiting for events asks whether its client is still there."""
GONE = 499
"""The status a request's log line and /metrics give a client that went away before its answer (nginx's "client
closed request"); nothing is sent to it."""
IGNORED_HEADER = "X-S1-Ignored-Fields"
"""Names the request's fields the server ignored (unknown to it), comma-separated, as vLLM logs them."""


class Reply:
    """How one endpoint writes its answer to one request (chat.py, completions.py): the whole object, or
    the chunks of a stream, all with the request's id, creation time and model name."""

    kind: ClassVar[str]
    """"chat", "completion" or "responses", for the log line."""
    id_prefix: ClassVar[str]
    chunk: ClassVar[type[Piece]]
    """The endpoint's chunk object; it takes id, created, model, choices and optionally usage."""
    named_events: ClassVar[bool] = False
    """Each SSE event also names its type on an `event:` line (the Responses API's stream)."""

    def __init__(self, body, jobs: list[Job], state: Served):
        self.body, self.jobs, self.state = body, jobs, state
        self.id, self.created = f"{self.id_prefix}-{uuid.uuid4().hex[:24]}", int(time.time())
        options = getattr(body, "stream_options", None)
        self.include_usage = options is not None and options.include_usage

    def s1_fields(self, job: Job, c: Completion) -> S1Fields:
        """s1's account of one choice; a reply that max_tokens ended in thinking says so (and the server logs it
        once for each max_tokens and cap)."""
        limit = job.request.forcing.max_tokens
        if cut_in_thinking(c, limit) and (limit, job.request.cap) not in self.state.told:
            self.state.told.add((limit, job.request.cap))
            log.warning(
                "max_tokens %d ended replies before their answer (thinking cap %d): max_tokens counts thinking too; "
                "clients should raise it or lower the cap (each such combination is logged once)",
                limit,
                job.request.cap,
            )
        return S1Fields.of(c, limit)

    def response(self, done: list[Done]) -> Shape:
        """The whole answer, once every choice is done (in job order)."""
        raise NotImplementedError

    def opening(self) -> list[Piece]:
        """Chunks a stream starts with, before any event."""
        return []

    def chunks(self, index: int, event: Delta | Done) -> list[Piece]:
        """Chunks for one event of choice `index`."""
        raise NotImplementedError

    def failure(self, message: str) -> dict:
        """The event that ends a stream whose generation failed."""
        return error_body(500, message, "server_error")

    def closing(self, completions: list[Completion]) -> list[Piece]:
        """The chunk a stream ends with once every choice is done: usage, when the client asked for it."""
        if not self.include_usage:
            return []
        return [self.chunk_of([], usage=Usage.of(completions, prompt_tokens(self.jobs)))]

    def chunk_of(self, choices: list, **fields) -> Piece:
        """A chunk of this request; `usage` is null in every chunk but the last when the client asked for it."""
        if self.include_usage:
            fields.setdefault("usage", None)
        return self.chunk(id=self.id, created=self.created, model=self.state.model_name, choices=choices, **fields)


def _sse(data: dict | str, named: bool = False) -> str:
    if isinstance(data, str):
        return f"data: {data}\n\n"
    event = f"event: {data['type']}\n" if named else ""
    return f"{event}data: {json.dumps(data)}\n\n"


MAX_IGNORED_NAMED = 32
"""A body with more unknown fields than this names the first ones and counts the rest (header and log stay short)."""


def ignored_fields(body) -> dict[str, str]:
    """The header naming the fields a request's body ignored (none: no header), logged once per request. Names are
    escaped to printable ASCII: a header is Latin-1, and a log line must not be split by a client's newline."""
    names = [n.encode("ascii", "backslashreplace").decode() for n in body.ignored()]
    if not names:
        return {}
    text = ", ".join(names[:MAX_IGNORED_NAMED])
    if len(names) > MAX_IGNORED_NAMED:
        text += f" and {len(names) - MAX_IGNORED_NAMED} more"
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    log.warning("ignored unknown request field(s): %s", text)
    return {IGNORED_HEADER: text}


class _Gone(Exception):
    """The client went away: its choices are cancelled and the request ends with one log line, no traceback."""


class _Choices:
    """One request's choices in flight: the scheduler's events for them, cancellation, the log line."""

    def __init__(self, http: HTTPRequest, state: Served, jobs: list[Job], kind: str):
        self.http, self.state, self.jobs, self.kind = http, state, jobs, kind
        self.events: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        self.started = time.monotonic()
        self.first_token: float | None = None
        self.checked = time.monotonic()
        self.done: dict[int, Done] = {}
        self.deltas = dict.fromkeys(range(len(jobs)), 0)
        """Events of each choice so far (one per generated token): what a cancelled choice generated."""
        loop = asyncio.get_running_loop()

        def sink_for(job: Job):
            return lambda event: loop.call_soon_threadsafe(self.events.put_nowait, (job.index, event))

        # the choices share one turn in the scheduler's admission: one request cannot take every slot (schedulers.py)
        self.rids = [state.scheduler.submit(job.request, sink_for(job), job.stream, group=self) for job in jobs]
        state.metrics.prompt_tokens.inc(sum(len(j.request.prompt_token_ids) for j in jobs))

    @property
    def finished(self) -> bool:
        return len(self.done) == len(self.jobs)

    def cancel(self) -> None:
        for rid in self.rids:
            self.state.scheduler.cancel(rid)  # a no-op once finished

    async def next(self) -> tuple[int, Event]:
        """The next event of any choice; a client that went away (checked every second) cancels them all."""
        while True:
            if time.monotonic() - self.checked > DISCONNECT_CHECK_S:
                self.checked = time.monotonic()
                if await self.http.is_disconnected():
                    raise _Gone
            try:
                index, event = await asyncio.wait_for(self.events.get(), timeout=DISCONNECT_CHECK_S)
            except TimeoutError:
                continue
            if isinstance(event, Delta):
                self.deltas[index] += 1
            if isinstance(event, Delta) and self.first_token is None:
                self.first_token = time.monotonic()
                self.state.metrics.ttft.observe(self.first_token - self.started)
            if isinstance(event, Done):
                self.done[index] = event
            return index, event

    def completions(self) -> list[Completion]:
        return [d.completion for d in self.done.values()]

    def record(self, status: int) -> None:
        completions = self.completions()
        metrics = self.state.metrics
        unfinished = sum(n for i, n in self.deltas.items() if i not in self.done)  # a cancelled choice's tokens
        metrics.tokens(sum(len(c.output_token_ids) for c in completions) + unfinished)
        metrics.prefill_tokens.inc(sum(c.prompt_tokens_processed for c in completions))
        metrics.latency.observe(time.monotonic() - self.started)
        log.info(
            "%s %s choices=%d prompt=%d thinking=%d answer=%d latency=%.2fs status=%d",
            self.kind,
            self.http.url.path,
            len(self.jobs),
            sum(len(j.request.prompt_token_ids) for j in self.jobs),
            sum(c.thinking_tokens for c in completions),
            sum(c.answer_tokens for c in completions),
            time.monotonic() - self.started,
            status,
        )


async def run(http: HTTPRequest, state: Served, jobs: list[Job], reply: Reply, stream: bool) -> Response:
    """Submit every choice; stream chunks or answer once all are done; free the slots on disconnect."""
    headers = ignored_fields(reply.body)
    choices = _Choices(http, state, jobs, reply.kind)
    if stream:
        return StreamingResponse(_stream(choices, reply), media_type="text/event-stream", headers=headers)
    try:
        while not choices.finished:
            _, event = await choices.next()
            if isinstance(event, Failed):
                choices.cancel()
                choices.record(500)
                return error_response(500, event.message, "server_error")
    except _Gone:
        choices.cancel()
        choices.record(GONE)
        return Response(status_code=GONE)  # nobody reads it; the server does not log a traceback either
    except asyncio.CancelledError:
        choices.cancel()
        choices.record(GONE)
        raise
    choices.record(200)
    response = reply.response([choices.done[j.index] for j in jobs]).response()
    response.headers.update(headers)
    return response


async def _stream(choices: _Choices, reply: Reply) -> AsyncIterator[str]:
    status = GONE  # until the stream ends: a client that goes away (its task cancelled, or _Gone) leaves it so
    try:
        named = reply.named_events
        for chunk in reply.opening():
            yield _sse(chunk.body(), named)
        failed = False
        while not choices.finished:
            index, event = await choices.next()
            if isinstance(event, Failed):
                failed = True
                yield _sse(reply.failure(event.message), named)
                break
            for chunk in reply.chunks(index, event):
                yield _sse(chunk.body(), named)
        if not failed:
            for chunk in reply.closing(choices.completions()):
                yield _sse(chunk.body(), named)
        yield _sse("[DONE]")
        status = 500 if failed else 200
    except _Gone:
        pass
    finally:
        choices.cancel()
        choices.record(status)
