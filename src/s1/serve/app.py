"""`s1 serve`'s app: the OpenAI API as vLLM serves it, with budget forcing in the request body.

This module only assembles: the state every handler reads (`state.Served`), one router per endpoint
group (chat.py, completions.py, models.py, metrics.py; pooling.py when a reward model is served),
the status-counting middleware, and the error handlers that turn every refusal into a 400 with one
sentence. What each field means is in protocol.py and translate.py; how a request runs, in running.py.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from s1.core.errors import UserError
from s1.engines.registry import EngineSpec, spec_of
from s1.serve import chat, completions, metrics, models
from s1.serve.protocol import BadRequest, Defaults
from s1.serve.responses import error_response
from s1.serve.state import Served
from s1.serve.translate import Translator

__all__ = ["create_app"]


def create_app(
    engine, scheduler, model_name: str, defaults: Defaults | None = None, spec: EngineSpec | None = None
) -> FastAPI:
    """The ASGI app; `scheduler` runs `engine` behind concurrent requests (see schedulers.py). `spec` says
    what the engine can do (default: what the registry records for its class)."""
    spec = spec or spec_of(engine)
    app = FastAPI(title="s1 serve")
    collector = metrics.Metrics(scheduler)
    translate = Translator(engine, model_name, spec, defaults or Defaults())
    app.state.served = Served(engine, spec, scheduler, model_name, translate, collector)
    app.add_middleware(metrics.StatusCounter, metrics=collector)
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(UserError, refused)
    app.add_exception_handler(BadRequest, refused)
    for module in (models, metrics, chat, completions):
        app.include_router(module.router)
    return app


async def invalid_body(http: HTTPRequest, exc: RequestValidationError) -> JSONResponse:
    """pydantic's verdict on a body, as one sentence: bad JSON, a field s1 does not implement, a bad value."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return error_response(400, "The request body is not valid JSON.")
    extra = [".".join(str(p) for p in e["loc"] if p != "body") for e in errors if e.get("type") == "extra_forbidden"]
    if extra:
        return error_response(
            400,
            f"Unsupported field {extra[0]!r}: s1 serve does not implement it; remove it "
            "(the README lists every field).",
        )
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return error_response(400, f"Invalid request: {where + ': ' if where else ''}{first.get('msg', 'malformed body')}.")


async def refused(http: HTTPRequest, exc: Exception) -> JSONResponse:
    """A request s1 will not run (`BadRequest`) or bad settings (`UserError`): 400 with its one sentence."""
    return error_response(400, str(exc))
