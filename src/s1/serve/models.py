"""GET /v1/models: the one model this server serves, under the name clients use, with its context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from s1.serve.responses import ModelCard, ModelList
from s1.serve.state import Served, served

router = APIRouter()


@router.get("/v1/models")
async def models(state: Annotated[Served, Depends(served)]) -> JSONResponse:
    card = ModelCard(id=state.model_name, max_model_len=state.engine.context_length)
    return ModelList(data=[card]).response()
