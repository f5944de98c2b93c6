"""What every handler reads: one `Served` per app, held in `app.state` and handed to handlers by FastAPI's
dependency injection (`Annotated[Served, Depends(served)]`), so handlers are plain module-level functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request as HTTPRequest

if TYPE_CHECKING:
    from s1.engines.registry import EngineSpec
    from s1.serve.metrics import Metrics
    from s1.serve.translate import Translator


@dataclass
class Served:
    """The served model: its engine and what the engine can do, the scheduler that runs it behind
    concurrent requests, the name clients use, the body -> request translation, and the metrics."""

    engine: object
    spec: EngineSpec
    scheduler: object
    model_name: str
    translate: Translator
    metrics: Metrics
    root: str = ""
    """Where the served weights came from (`--model`), for the model card."""
    started: int = 0
    """When the server started (Unix time), the model card's `created`."""
    told: set = field(default_factory=set)
    """Warnings already logged once (max_tokens that ends replies in thinking, by max_tokens and cap)."""


def served(http: HTTPRequest) -> Served:
    return http.app.state.served
