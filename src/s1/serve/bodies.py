"""A request body -> its typed object, off the event loop.

Parsing JSON, checking its text and validating it against the endpoint's pydantic model are CPU work that grows with
the body; run on the event loop, one large body would hold up every other client (`/health` included). So each
generating endpoint reads its body here: in a worker thread, with every refusal one sentence (a 400 from the app's
handlers): a body sent with another Content-Type than JSON, bytes that are not UTF-8, JSON that does not parse, and
text that is not valid Unicode (a lone surrogate such as "\\ud800", which JSON's escapes can spell but no UTF-8 text
holds), named by its field path. See docs/design.md, "Serving".
"""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from s1.serve.protocol import BadRequest

M = TypeVar("M", bound=BaseModel)


DOCUMENTED: dict[str, type[BaseModel]] = {}
"""The body models of the routes that read their own body, by name, for /openapi.json (`documented`)."""


def documented(model: type[BaseModel]) -> dict:
    """The route's `openapi_extra` naming its body: FastAPI documents a body only where it parses it itself,
    and these routes parse theirs here, so without this /openapi.json would show them taking no body."""
    DOCUMENTED[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def with_body_schemas(schema: dict) -> dict:
    """FastAPI's OpenAPI document with the schemas `documented` refers to (and the ones they use) added."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in DOCUMENTED.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for ref, schema_ in body.pop("$defs", {}).items():  # FastAPI's own components stay as FastAPI wrote them
            components.setdefault(ref, schema_)
        components[name] = body
    return schema


async def read_body(http: HTTPRequest, model: type[M]) -> M:
    """The request's body as `model`, parsed and checked in a worker thread."""
    raw = await http.body()
    return await run_in_threadpool(parse_body, raw, http.headers.get("content-type", ""), model)


def parse_body(raw: bytes, content_type: str, model: type[M]) -> M:
    kind = content_type.split(";")[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise BadRequest(
            f"The request body was sent as Content-Type {kind}; send it as JSON with "
            "'Content-Type: application/json' (curl: -H 'Content-Type: application/json')."
        )
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest("The request body is not valid UTF-8; send JSON encoded as UTF-8.") from None
    except ValueError:
        raise BadRequest("The request body is not valid JSON.") from None
    where = not_unicode(data)
    if where is not None:
        raise BadRequest(
            f"{where or 'The request body'} is not valid Unicode text (it holds a lone surrogate such as \\ud800); "
            "send UTF-8 text.",
            param=where or None,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False), body=data) from None


def not_unicode(value, path: str = "") -> str | None:
    """The field path of the first string (or key) in a parsed JSON value that UTF-8 cannot encode, else None."""
    stack = [(value, path)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _encodes(value):
                return path
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                where = f"{path}.{key}" if path else str(key)
                if not _encodes(key):
                    return (path + "." if path else "") + key.encode("utf-8", "backslashreplace").decode()
                stack.append((item, where))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))
    return None


def _encodes(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
