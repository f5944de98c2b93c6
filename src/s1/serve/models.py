"""GET /v1/models and /v1/models/{id}: the one model this server serves, under the name clients use, with its
context, where its weights came from (`root`) and when the server started (`created`), as vLLM's model card."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from s1.serve.responses import ModelCard, ModelList, error_response
from s1.serve.state import Served, served

router = APIRouter()


def card(state: Served) -> ModelCard:
    return ModelCard(
        id=state.model_name, created=state.started, root=state.root, max_model_len=state.engine.context_length
    )


@router.get("/v1/models")
async def models(state: Annotated[Served, Depends(served)]) -> JSONResponse:
    return ModelList(data=[card(state)]).response()


@router.get("/v1/models/{model_id:path}")
async def model(model_id: str, state: Annotated[Served, Depends(served)]) -> JSONResponse:
    if model_id != state.model_name:
        return error_response(
            404,
            f"The model {model_id!r} does not exist here; this server serves {state.model_name!r}.",
            "not_found_error",
            param="model",
        )
    return card(state).response()
