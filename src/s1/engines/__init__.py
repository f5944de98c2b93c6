"""Engines: one small interface (`generate(requests) -> completions`) over several backends.

Which engines there are and what each can do is in registry.py; `load_engine` chooses through it.
"""

from __future__ import annotations

from s1.core.errors import UserError, named
from s1.core.sampling import Sampling
from s1.engines.base import Completion, Engine, Request, make_request
from s1.engines.registry import ENGINES, LoadOptions, spec


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
    if base_urls and engine != "remote":
        raise UserError(f"{named('base_urls')} is only for {named('engine')} remote.")
    options = LoadOptions(
        device=device, dtype=dtype, parallel=parallel, base_urls=tuple(base_urls or ()), remote_mode=remote_mode
    )
    return spec(engine).load(model, fmt, options)


__all__ = ["Completion", "Engine", "Request", "Sampling", "load_engine", "make_request", "ENGINES"]
