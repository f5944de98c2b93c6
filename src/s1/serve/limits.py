"""What one client may take from a server that others share: the request body's size and the time to send it, idle
and open connections, and the sequences one request may ask for. Declared once here (`s1 serve` derives its options
from these declarations, as it does for `BudgetForcing` and `Sampling`); each limit past which a client is refused
says so in one sentence, in OpenAI's error shape (docs/design.md, "Serving").

`BodyLimit` is the ASGI middleware that enforces the body's size and time while the body is read, before anything
parses it: a body past `max_request_body_bytes` is a 413 (at once when its Content-Length says so), one not fully
sent within `request_read_timeout` seconds a 408, and the connection is closed in both cases. `http_protocol` times
the request's head the same way (uvicorn waits for a head forever). The connection limits are uvicorn's own
(`timeout_keep_alive`, `limit_concurrency`: a 503 past it); the sequences per request are counted where a body
becomes requests (translate.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from s1.core.errors import UserError
from s1.core.settings import setting
from s1.serve.responses import error_response

MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """The server's limits on what one request or connection may take. Declared here once (s1/core/settings.py)."""

    max_request_body_bytes: int = setting(
        8 * MIB, help="Largest request body in bytes; a larger one is refused with 413 before it is parsed.", ge=1
    )
    request_read_timeout: float = setting(
        30.0,
        help="Seconds a client may take to send a request's head, then its body; a slower one gets 408 and is closed.",
        gt=0,
    )
    timeout_keep_alive: int = setting(
        5, help="Seconds an idle keep-alive connection stays open (uvicorn's --timeout-keep-alive).", ge=1
    )
    limit_concurrency: int = setting(
        512, help="Connections open at once; past it a new request gets 503 (uvicorn's --limit-concurrency).", ge=1
    )
    max_sequences_per_request: int = setting(
        256, help="Sequences one request may ask for (prompts x n); more is a 400 naming n and prompt.", ge=1
    )

    def __post_init__(self):
        for name in ("max_request_body_bytes", "timeout_keep_alive", "limit_concurrency", "max_sequences_per_request"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a whole number of at least 1, got {value!r}.", name, value)
        t = self.request_read_timeout
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 < t < float("inf"):
            raise UserError(
                f"request_read_timeout must be a positive number of seconds, got {t!r}.", "request_read_timeout", t
            )

    def uvicorn(self) -> dict:
        """The limits uvicorn enforces, as `uvicorn.run` keywords."""
        return {
            "timeout_keep_alive": self.timeout_keep_alive,
            "limit_concurrency": self.limit_concurrency,
            "http": http_protocol(self.request_read_timeout),
        }


def http_protocol(timeout: float):
    """uvicorn's HTTP/1.1 protocol (h11) with a timer on each request's head: a connection that has not sent a whole
    head `timeout` seconds after it opened (or after its last response) gets 408 and is closed. Without it a client
    that sends half a head holds its connection, and with enough of them every slot of --limit-concurrency."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeout(H11Protocol):
        head_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def handle_events(self):
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # the head is in: the body's time is BodyLimit's
                self._disarm()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def _arm(self):
            self._disarm()
            self.head_timer = self.loop.call_later(timeout, self._late)

        def _disarm(self):
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _late(self):
            self.head_timer = None
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                self.transport.close()

    return HeadTimeout


class BodyLimit:
    """Reads each request's whole body before the app sees it, bounded in size and time (see the module doc), then
    hands the app the body it read; later `receive` calls (a client that disconnects) go to the server as before."""

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.max_request_body_bytes
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await self._refuse(send, *self._too_large(int(length)))
        chunks, size, disconnected = [], 0, None
        deadline = time.monotonic() + self.limits.request_read_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - time.monotonic(), 0))
            except TimeoutError:
                return await self._refuse(
                    send,
                    408,
                    f"The request body was not sent within {self.limits.request_read_timeout:g} seconds; send it "
                    "at once (the server's --request-read-timeout).",
                    "timeout_error",
                )
            if message["type"] != "http.request":
                disconnected = message  # the client went away before its body was complete: nothing to answer
                break
            size += len(message.get("body", b""))
            if size > limit:
                return await self._refuse(send, *self._too_large(None))
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if disconnected is not None:
            return
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, length: int | None) -> tuple[int, str, str]:
        limit = self.limits.max_request_body_bytes
        size = f" ({length} bytes)" if length is not None else ""
        return (
            413,
            f"The request body{size} is larger than this server's limit of {limit} bytes; send a smaller request, "
            "or start the server with a higher --max-request-body-bytes.",
            "invalid_request_error",
        )

    @staticmethod
    async def _refuse(send, status: int, message: str, kind: str) -> None:
        """OpenAI's error shape, sent from below FastAPI's handlers; the connection is closed after it (the rest of
        the body is never read)."""
        response = error_response(status, message, kind, headers={"connection": "close"})
        await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": False})
