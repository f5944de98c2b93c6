"""vLLM's tokenizer endpoints: POST /tokenize, POST /detokenize, GET /tokenizer_info. lm-evaluation-harness's
`tokenizer_backend=remote` uses them, so a client needs no local copy of the served model's tokenizer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from s1.core.formats import encode
from s1.serve.bodies import documented, read_body
from s1.serve.protocol import BadRequest, Message, Open
from s1.serve.responses import Detokenized, Tokenized
from s1.serve.running import ignored_fields
from s1.serve.state import Served, served

router = APIRouter()


class TokenizeBody(Open):
    """vLLM's two forms: a `prompt`, or chat `messages` rendered through the chat template first."""

    model: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = None
    add_special_tokens: bool | None = None
    """Default true for a prompt and false for messages (the template writes its own), as vLLM."""
    add_generation_prompt: bool = True
    return_token_strs: bool = False
    chat_template_kwargs: dict | None = None


class DetokenizeBody(Open):
    model: str | None = None
    tokens: list[int] = Field(max_length=1_000_000)


@router.post("/tokenize", openapi_extra=documented(TokenizeBody))
async def tokenize(http: HTTPRequest, state: Annotated[Served, Depends(served)]) -> JSONResponse:
    body = await read_body(http, TokenizeBody)
    return await run_in_threadpool(_tokenize, body, state)  # templating and tokenizing: off the event loop


def _tokenize(body: TokenizeBody, state: Served) -> JSONResponse:
    _check_model(body.model, state)
    tokenizer = state.engine.tokenizer
    if (body.prompt is None) == (body.messages is None):
        raise BadRequest("Send either prompt or messages to /tokenize.")
    if body.messages is not None:
        kwargs = state.translate.template_kwargs(body.chat_template_kwargs)
        text = state.translate.render(
            [m.for_template() for m in body.messages], kwargs, add_generation_prompt=body.add_generation_prompt
        )
        special = bool(body.add_special_tokens)
    else:
        text, special = body.prompt, body.add_special_tokens is not False
    ids = list(tokenizer.encode(text, add_special_tokens=True)) if special else encode(tokenizer, text)
    strs = tokenizer.convert_ids_to_tokens(ids) if body.return_token_strs else None
    result = Tokenized(count=len(ids), max_model_len=state.engine.context_length, tokens=ids, token_strs=strs)
    return JSONResponse(result.body(), headers=ignored_fields(body))


@router.post("/detokenize", openapi_extra=documented(DetokenizeBody))
async def detokenize(http: HTTPRequest, state: Annotated[Served, Depends(served)]) -> JSONResponse:
    body = await read_body(http, DetokenizeBody)
    return await run_in_threadpool(_detokenize, body, state)


def _detokenize(body: DetokenizeBody, state: Served) -> JSONResponse:
    _check_model(body.model, state)
    for t in body.tokens:
        state.translate.check_id(t, "tokens")
    prompt = state.engine.tokenizer.decode(body.tokens, skip_special_tokens=False)
    return JSONResponse(Detokenized(prompt=prompt).body(), headers=ignored_fields(body))


@router.get("/tokenizer_info")
async def tokenizer_info(state: Annotated[Served, Depends(served)]) -> JSONResponse:
    """The tokenizer's class, special tokens, chat template and length limit, as vLLM's endpoint reports them."""
    tokenizer = state.engine.tokenizer
    info = {"tokenizer_class": type(tokenizer).__name__}
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = getattr(tokenizer, name, None)
        info[name] = str(value) if value is not None else None
    info["chat_template"] = getattr(tokenizer, "chat_template", None)
    info["model_max_length"] = state.engine.context_length
    return JSONResponse(info)


def _check_model(model: str | None, state: Served) -> None:
    if model not in (None, "", state.model_name):
        raise BadRequest(f"Model {model!r} is not served here; use {state.model_name!r} (see /v1/models).")
