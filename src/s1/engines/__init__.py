"""Engines: one small interface (`generate(requests) -> completions`) over several backends."""

from __future__ import annotations

from ..errors import UserError
from .base import Completion, Engine, Request, Sampling, make_request

ENGINES = ("hf", "reprefill")


def load_engine(model: str, engine: str = "hf", fmt="s1", device: str = "auto", dtype: str = "auto") -> Engine:
    if engine == "hf":
        from .hf import HFEngine

        return HFEngine.load(model, fmt, device=device, dtype=dtype)
    if engine == "reprefill":
        from .reprefill import ReprefillEngine

        return ReprefillEngine.load(model, fmt, device=device, dtype=dtype)
    raise UserError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")


__all__ = ["Completion", "Engine", "Request", "Sampling", "load_engine", "make_request", "ENGINES"]
