"""`s1 serve --api-key` (or `S1_API_KEY`): a bearer token on every /v1 route, as vLLM's `--api-key` (whose
routes outside /v1 — /health, /metrics, /tokenize, /pooling — stay open, as there). A request without the
token, or with another, gets a 401 in OpenAI's error shape; tokens are compared in constant time."""

from __future__ import annotations

import hmac
import json

from s1.serve.responses import error_body

PROTECTED = "/v1"


class ApiKey:
    """Plain ASGI (as metrics.StatusCounter, so a client's disconnect still reaches the endpoint)."""

    def __init__(self, app, key: str):
        self.app = app
        self.expected = f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not scope["path"].startswith(PROTECTED):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        message = "Missing API key" if not given else "Incorrect API key"
        await _unauthorized(send, f"{message}: send the server's key as 'Authorization: Bearer KEY'.")


async def _unauthorized(send, message: str) -> None:
    body = json.dumps(error_body(401, message, "authentication_error")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
