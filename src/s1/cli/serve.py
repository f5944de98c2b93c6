"""`s1 serve`: the OpenAI API (as vLLM serves it) with budget forcing in each request.

Its forcing and sampling options are the defaults of requests that set none, derived from the same
declarations as the request fields themselves (serve/protocol.py), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated

import typer

from s1.cli.common import FormatOpt, app, err
from s1.cli.settings import Group, derive
from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.sampling import Sampling
from s1.evaluate.methods import SearchSpec
from s1.serve.limits import Limits
from s1.serve.protocol import DEFAULT_EFFORT_CAPS, EFFORTS

REQUEST_DEFAULT = "{help} The default for requests that set none."


@app.command()
@derive
def serve(
    model: Annotated[
        str,
        typer.Option(
            help="smollm2 (embedded), a model directory, a .gguf file or a hub id (with --upstream: its tokenizer)."
        ),
    ] = "smollm2",
    engine: Annotated[str, typer.Option(help="hf (continuous batching), llamacpp (GGUF on CPU) or remote.")] = "hf",
    format: FormatOpt = "s1",
    base_urls: Annotated[
        list[str] | None,
        typer.Option(
            "--upstream", help="OpenAI-compatible server(s) to put budget forcing in front of; repeat for several."
        ),
    ] = None,
    upstream_model: Annotated[
        str | None, typer.Option(help="Model name the upstream server expects (default: its first).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            "--parallel",
            "-np",
            help="Sequences decoded together (hf, llamacpp: llama-server's --parallel); requests in flight (remote).",
        ),
    ] = 16,
    ctx_size: Annotated[
        int | None,
        typer.Option(
            "--ctx-size",
            "-c",
            help="llamacpp: KV cells of all sequences together, split evenly among them (llama-server's "
            "--ctx-size; default 8192 per sequence).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            "-t",
            help="CPU threads for decoding (default: llamacpp the cores other processes leave free; hf chosen by "
            "measuring its own steps).",
        ),
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option(help="Name clients use in 'model' (default: --model).")
    ] = None,
    forcing: dict = Group(BudgetForcing, help=REQUEST_DEFAULT),
    reasoning_effort_caps: Annotated[
        str,
        typer.Option(
            help="Thinking caps that reasoning_effort levels map to (minimal, low, medium, high, xhigh, max; any "
            "not given keep their default). A level's cap the context cannot hold becomes what the context leaves."
        ),
    ] = ",".join(f"{k}={v}" for k, v in DEFAULT_EFFORT_CAPS.items()),
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="S1_API_KEY",
            show_envvar=True,
            help="Require 'Authorization: Bearer KEY' on every /v1 route, as vLLM's --api-key (/health, /metrics "
            "and the tokenizer routes stay open).",
        ),
    ] = None,
    sampling: dict = Group(Sampling, help=REQUEST_DEFAULT),
    limits: dict = Group(Limits),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    reward: dict = Group(
        SearchSpec,
        only=("reward_model", "reward_kind", "step_tag"),
        own=(
            (
                "reward_model",
                "Also serve this reward model (a directory or module:function) at /pooling, vLLM's Pooling API, "
                "for search on other machines.",
            ),
        ),
    ),
) -> None:
    """Serve the OpenAI API (as vLLM does) with budget-forcing fields in each request."""
    import logging

    import uvicorn

    from s1.serve.protocol import Defaults
    from s1.serve.service import build_service

    if not 0 < port < 65536:
        raise UserError(f"--port must be from 1 to 65535, got {port}.")
    caps = _effort_caps(reasoning_effort_caps)
    # checked here, before the model loads, by the classes that check these settings
    defaults = Defaults(BudgetForcing(**forcing), Sampling(**sampling), caps)
    bounds = Limits(**limits)
    if base_urls:
        engine = "remote"
    app_ = build_service(
        model,
        engine,
        format,
        base_urls or [],
        upstream_model,
        batch_size,
        served_model_name,
        defaults,
        device,
        ctx_size=ctx_size,
        threads=threads,
        api_key=api_key,
        limits=bounds,
        **reward,
    )
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.WARNING)
    logging.getLogger("s1.serve").setLevel(logging.INFO)
    served = reward["reward_model"]
    err.print(
        f"s1 serve: {served_model_name or model} ({engine}) on http://{host}:{port}/v1"
        + (f", reward model {served} at /pooling" if served else ""),
        style="cyan",
    )
    # Open streams must not hold a SIGTERM up: give them a few seconds, then close them.
    uvicorn.run(app_, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3, **bounds.uvicorn())


def _effort_caps(text: str) -> dict[str, int]:
    caps = dict(DEFAULT_EFFORT_CAPS)
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in EFFORTS or not value.strip().isdigit():
            raise UserError(
                f"--reasoning-effort-caps takes name=tokens pairs for {', '.join(EFFORTS)}, such as "
                f"'low=512,medium=2048,high=8192'; got {part!r}."
            )
        caps[name] = int(value)
    return caps
