"""`s1 serve`'s app: the OpenAI API as vLLM serves it, with budget forcing in the request body.

This module only assembles: the state every handler reads (`state.Served`), one router per endpoint
group (chat.py, completions.py, responses_api.py, models.py, tokens.py, metrics.py; pooling.py when a reward
model is served), the status-counting and API-key middleware, and the error handlers that turn every refusal
into OpenAI's error shape with one sentence (a 400 for a bad request, 404 for an unknown route). What each field
means is in protocol.py and translate.py; how a request runs, in running.py.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from s1.core.errors import UserError
from s1.engines.registry import EngineSpec, spec_of
from s1.serve import chat, completions, metrics, models, responses_api, tokens
from s1.serve.auth import ApiKey
from s1.serve.bodies import with_body_schemas
from s1.serve.limits import BodyLimit, Limits
from s1.serve.protocol import BadRequest, Defaults
from s1.serve.responses import error_response
from s1.serve.state import Served
from s1.serve.translate import Translator

__all__ = ["create_app"]


def create_app(
    engine,
    scheduler,
    model_name: str,
    defaults: Defaults | None = None,
    spec: EngineSpec | None = None,
    api_key: str | None = None,
    root: str | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    """The ASGI app; `scheduler` runs `engine` behind concurrent requests (see schedulers.py). `spec` says
    what the engine can do (default: what the registry records for its class); `api_key` guards every /v1
    route (auth.py); `root` is where the weights came from (the model card's `root`); `limits` bound what one
    request may take (limits.py: the body's size and time here, sequences per request in translate.py)."""
    spec = spec or spec_of(engine)
    app = FastAPI(title="s1 serve")
    collector = metrics.Metrics(scheduler, model_name)
    limits = limits or Limits()
    translate = Translator(engine, model_name, spec, defaults or Defaults(), limits)
    app.state.served = Served(
        engine, spec, scheduler, model_name, translate, collector, root=root or model_name, started=int(time.time())
    )
    app.add_middleware(BodyLimit, limits=limits)  # inside the API key's check: no body is read for a wrong key
    if api_key:
        app.add_middleware(ApiKey, key=api_key)
    app.add_middleware(metrics.StatusCounter, metrics=collector)
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(UserError, refused)
    app.add_exception_handler(BadRequest, refused)
    app.add_exception_handler(HTTPException, http_error)
    for module in (models, metrics, chat, completions, responses_api, tokens):
        app.include_router(module.router)
    schema = app.openapi

    def openapi() -> dict:  # the routes that read their own bodies name them (bodies.documented)
        return app.openapi_schema or with_body_schemas(schema())

    app.openapi = openapi
    return app


async def invalid_body(http: HTTPRequest, exc: RequestValidationError) -> JSONResponse:
    """pydantic's verdict on a body, as one sentence: bad JSON, a bad value."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return error_response(400, "The request body is not valid JSON.")
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if first.get("type") == "extra_forbidden":
        return error_response(
            400, f"Unsupported field `{where}`: this endpoint does not take it; remove it.", param=where
        )
    return error_response(
        400, f"Invalid request: {where + ': ' if where else ''}{first.get('msg', 'malformed body')}.", param=where
    )


async def refused(http: HTTPRequest, exc: Exception) -> JSONResponse:
    """A request s1 will not run (`BadRequest`) or bad settings (`UserError`): 400 with its one sentence."""
    param = exc.param if isinstance(exc, BadRequest) else next(iter(getattr(exc, "settings", ())), None)
    return error_response(400, str(exc), param=param)


async def http_error(http: HTTPRequest, exc: HTTPException) -> JSONResponse:
    """FastAPI's own refusals (an unknown route, a wrong method) in OpenAI's error shape, not `{"detail": ...}`."""
    if exc.status_code == 404:
        message = f"{http.method} {http.url.path} does not exist on s1 serve; see the README's endpoint list."
    elif exc.status_code == 405:
        message = f"{http.url.path} does not take {http.method}."
    else:
        message = str(exc.detail)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return error_response(exc.status_code, message, kind, headers=getattr(exc, "headers", None))
