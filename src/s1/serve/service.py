"""Assembles what `s1 serve` runs: an engine, the scheduler that fits it, and the HTTP app."""

from __future__ import annotations

from s1.core.errors import UserError
from s1.engines import registry
from s1.engines.registry import LoadOptions
from s1.serve.app import create_app
from s1.serve.limits import Limits
from s1.serve.protocol import Defaults


def build_service(
    model: str,
    engine: str,
    fmt: str,
    upstream: list[str],
    upstream_model: str | None,
    batch_size: int,
    served_model_name: str | None,
    defaults: Defaults,
    device: str = "auto",
    remote_mode: str = "auto",
    ctx_size: int | None = None,
    threads: int | None = None,
    reward_model: str | None = None,
    reward_kind: str = "auto",
    step_tag: str | None = None,
    api_key: str | None = None,
    limits: Limits | None = None,
):
    """`batch_size` sequences decode together (hf, llamacpp) or are in flight (remote); `ctx_size` is the
    llama.cpp context of all of them together (llama-server's --ctx-size); `threads` the CPU threads;
    `reward_model` (a directory or module:function) is served at /pooling beside the generator; `api_key`
    guards the /v1 routes (serve/auth.py)."""
    from s1.serve.schedulers import BatchScheduler, SerialScheduler

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}.")
    if ctx_size is not None and engine != "llamacpp":
        raise UserError("--ctx-size is for --engine llamacpp (the hf engine's context is the model's own).")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}.")
    reward = None
    if reward_model is not None:
        from s1.evaluate.rewards import load_reward_model

        if reward_model.startswith(("http://", "https://")):
            raise UserError("--reward-model for s1 serve is a model directory or module:function to serve, not a URL.")
        reward = load_reward_model(reward_model, reward_kind, step_tag)
    spec = registry.spec(engine, serves=True)
    if spec.name == "remote" and not upstream:
        raise UserError("The remote engine needs --upstream URL (an OpenAI-compatible server).")
    options = LoadOptions(
        device=device,
        threads=threads,
        parallel=batch_size,
        ctx_size=ctx_size,
        base_urls=tuple(upstream),
        upstream_model=upstream_model,
        remote_mode=remote_mode,
    )
    eng = spec.load(model, fmt, options)
    if spec.batch_loop:
        scheduler = BatchScheduler(eng, max_batch=batch_size)
    else:
        scheduler = SerialScheduler(eng, workers=batch_size)
    for text in defaults.forcing.extensions:
        eng.format_tokens.check_extension(text)
    app = create_app(
        eng, scheduler, served_model_name or model, defaults, spec, api_key=api_key, root=model, limits=limits
    )
    if reward is not None:
        from s1.serve.pooling import add_pooling_route

        add_pooling_route(app, reward, reward.name, tag=step_tag or "\n\n")
    return app
