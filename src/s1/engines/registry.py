"""The engines s1 has, by name: which class runs each and what it can do.

Every place that chooses an engine (`load_engine`, `s1 serve`'s service) or asks what an engine can do
(the server refusing logprobs, a search forking a paused trajectory) reads it here, so adding an engine
is one entry. Classes are named as `module:Class` and imported only when that engine is loaded: naming
the llama.cpp engine must not import llama-cpp-python, nor the remote one torch's model code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from s1.core.errors import UserError


@dataclass(frozen=True)
class LoadOptions:
    """Everything a front end may pass to an engine's `load`; each engine takes the fields it uses."""

    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    """CPU threads (hf: chosen by measuring when None; llamacpp: all cores when None)."""
    parallel: int = 8
    """llamacpp: the sequences its context holds at once, the batch it will be asked to run."""
    ctx_size: int | None = None
    """llamacpp: KV cells of all sequences together (llama-server's --ctx-size)."""
    base_urls: tuple[str, ...] = ()
    """remote: the OpenAI-compatible servers."""
    upstream_model: str | None = None
    """remote: the model name the servers expect (default: their first)."""
    remote_mode: str = "auto"
    """remote: "ids", "text" or "auto" (see engines/remote.py)."""


@dataclass(frozen=True)
class EngineSpec:
    """One engine: its class and its capabilities."""

    name: str
    engine_class: str
    """`module:Class`, imported by `load`."""
    load_args: Callable[[LoadOptions], dict]
    """The keyword arguments its class's `load(model, fmt=..., **kwargs)` takes from the options."""
    batch_loop: bool
    """Its rows run in this process's `engines.batching.BatchLoop`: `s1 serve` batches them continuously
    (the others' `generate` is called one request per worker: remote servers batch on their side)."""
    logprobs: bool
    """It sees the logits: logprobs, prompt logprobs (echo) and `min_tokens` (which masks stop tokens)."""
    forks: bool
    """It keeps a paused trajectory's cache, so a search's children fork a prefix instead of resending it."""
    serves: bool
    """`s1 serve` offers it (the reprefill engine is the reference loop of the tests and benchmarks)."""

    def cls(self) -> type:
        module, _, name = self.engine_class.partition(":")
        return getattr(importlib.import_module(module), name)

    def load(self, model: str, fmt, options: LoadOptions = LoadOptions()):
        return self.cls().load(model, fmt=fmt, **self.load_args(options))


SPECS: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec(
            "hf",
            "s1.engines.hf:HFEngine",
            lambda o: {"device": o.device, "dtype": o.dtype, "threads": o.threads},
            batch_loop=True,
            logprobs=True,
            forks=True,
            serves=True,
        ),
        EngineSpec(
            "reprefill",
            "s1.engines.reprefill:ReprefillEngine",
            lambda o: {"device": o.device, "dtype": o.dtype},
            batch_loop=False,
            logprobs=False,
            forks=False,
            serves=False,
        ),
        EngineSpec(
            "llamacpp",
            "s1.engines.llamacpp:LlamaCppEngine",
            lambda o: {"parallel": o.parallel, "ctx_size": o.ctx_size, "threads": o.threads},
            batch_loop=True,
            logprobs=True,
            forks=True,
            serves=True,
        ),
        EngineSpec(
            "remote",
            "s1.engines.remote:RemoteEngine",
            lambda o: {"base_urls": list(o.base_urls), "upstream_model": o.upstream_model, "mode": o.remote_mode},
            batch_loop=False,
            logprobs=False,
            forks=False,
            serves=True,
        ),
    )
}
ENGINES = tuple(SPECS)

UNKNOWN = EngineSpec("unknown", "", lambda o: {}, batch_loop=False, logprobs=False, forks=False, serves=False)
"""What an engine s1 does not know (a user's own class) is assumed to do: only `generate`."""


def names(**capabilities: bool) -> list[str]:
    """The engines with every capability given, e.g. `names(serves=True, logprobs=True)`."""
    return [n for n, s in SPECS.items() if all(getattr(s, k) == v for k, v in capabilities.items())]


def spec(name: str, **capabilities: bool) -> EngineSpec:
    """The engine called `name` among those with `capabilities`, or one sentence listing them."""
    choices = names(**capabilities)
    if name not in choices:
        raise UserError(f"Unknown engine {name!r}; choose one of {', '.join(choices)}.")
    return SPECS[name]


def spec_of(engine) -> EngineSpec:
    """The capabilities of a loaded engine: those of the most specific registered class it is an instance of."""
    by_class = {s.engine_class: s for s in SPECS.values()}
    for klass in type(engine).__mro__:
        found = by_class.get(f"{klass.__module__}:{klass.__qualname__}")
        if found is not None:
            return found
    return UNKNOWN
