"""Engines: one small interface (`generate(requests) -> completions`) over several backends."""

from __future__ import annotations

from s1.core.errors import UserError, named
from s1.core.sampling import Sampling
from s1.engines.base import Completion, Engine, Request, make_request

ENGINES = ("hf", "reprefill", "llamacpp", "remote")


def load_engine(
    model: str,
    engine: str = "hf",
    fmt="s1",
    device: str = "auto",
    dtype: str = "auto",
    base_urls: list[str] | None = None,
    remote_mode: str = "auto",
    parallel: int = 8,
) -> Engine:
    """`model` names the weights (hf, reprefill, llamacpp) or, for remote, the served model's tokenizer.

    `remote_mode` (remote only): "ids" sends token ids (vLLM, `s1 serve`), "text" sends text (llama.cpp's
    server), "auto" asks each server once which it takes. `parallel` (llamacpp only): sequences its
    context holds at once, the batch size it will be asked to run.
    """
    if remote_mode != "auto" and engine != "remote":
        raise UserError(f"{named('remote_mode')} is only for {named('engine')} remote.")
    if engine == "llamacpp":
        from s1.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine.load(model, fmt, parallel=parallel)
    if engine == "remote":
        from s1.engines.remote import RemoteEngine

        return RemoteEngine.load(model, base_urls or [], fmt, mode=remote_mode)
    if base_urls:
        raise UserError(f"{named('base_urls')} is only for {named('engine')} remote.")
    if engine == "hf":
        from s1.engines.hf import HFEngine

        return HFEngine.load(model, fmt, device=device, dtype=dtype)
    if engine == "reprefill":
        from s1.engines.reprefill import ReprefillEngine

        return ReprefillEngine.load(model, fmt, device=device, dtype=dtype)
    raise UserError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")


__all__ = ["Completion", "Engine", "Request", "Sampling", "load_engine", "make_request", "ENGINES"]
