"""`s1 eval`: sweep budgets and methods over benchmarks; grade, summarize and plot into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s1.cli.common import (
    MODEL_HELP,
    REMOTE_MODE_HELP,
    BaseUrlsOpt,
    DeviceOpt,
    DtypeOpt,
    FormatOpt,
    RemoteMode,
    app,
    err,
    names,
    out,
)
from s1.cli.config_file import load_config, paper_numbers
from s1.cli.settings import Group, derive, int_list
from s1.core.forcing import BudgetForcing
from s1.core.sampling import Sampling
from s1.evaluate.config import EVAL_DEFAULTS
from s1.evaluate.methods import METHODS, SearchSpec

BENCHMARK_HELP = (
    "aime24, aime25, math500, gpqa, gpqa_simple_evals, amc23, gsm8k, olympiadbench, minerva, or a task file "
    "(my_task.yaml); comma-separated for several."
)
METHOD_HELP = f"Comma-separated, any of: {', '.join(METHODS)}."  # from the registry, so a new method is listed


@app.command("eval")
@derive
def eval_command(
    ctx: typer.Context,
    config_file: Annotated[
        str | None,
        typer.Option(
            "--config",
            is_eager=True,
            callback=load_config,
            help="A YAML file whose keys are this command's options (max_thinking_tokens: [512, 1024]); options "
            "given as flags override it. configs/paper/ holds the paper's experiments, each with its numbers.",
        ),
    ] = None,
    benchmark: Annotated[str, typer.Option(help=BENCHMARK_HELP)] = "aime24",
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "smollm2",
    format: FormatOpt = "s1",
    engine: Annotated[str, typer.Option(help="hf (in-flight forcing), llamacpp, reprefill or remote.")] = "hf",
    base_urls: BaseUrlsOpt = None,
    remote_mode: Annotated[RemoteMode, typer.Option(help=REMOTE_MODE_HELP)] = "auto",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    data: Annotated[
        str | None, typer.Option(help="Any JSONL/CSV/JSON file of problems instead of a named benchmark.")
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            envvar="S1_DATA_DIR",
            help="Folder with the benchmarks' data files (aime24_nofigures.jsonl, math500.jsonl, gpqa_diamond.csv "
            "...; else the hub).",
        ),
    ] = None,
    include_path: Annotated[
        str | None, typer.Option(help="Folder of your own task files (*.yaml), added to the shipped benchmarks.")
    ] = None,
    question_field: Annotated[str | None, typer.Option(help="Field of --data holding the question.")] = None,
    answer_field: Annotated[str | None, typer.Option(help="Field of --data holding the answer.")] = None,
    id_field: Annotated[
        str | None,
        typer.Option(help="Field of --data holding a unique id (default: id, unique_id or idx, else the row number)."),
    ] = None,
    answer_kind: Annotated[str | None, typer.Option(help="math, integer or choice (how answers are graded).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = None,
    ids: Annotated[str | None, typer.Option(help="Only these problem ids, comma-separated.")] = None,
    method: Annotated[str, typer.Option(help=METHOD_HELP)] = "budget_forcing",
    forcing: dict = Group(BudgetForcing, sweep=True, defaults=tuple(EVAL_DEFAULTS.items())),
    steps: Annotated[
        str | None, typer.Option(help="Step budgets for step_conditional (default: token budgets / tokens-per-step).")
    ] = None,
    tokens_per_step: Annotated[
        int, typer.Option(help="Tokens per step when a step budget is enforced or checked.")
    ] = 100,
    samples: Annotated[int, typer.Option(help="Samples per problem (parallel scaling: maj@k, pass@k).")] = 1,
    sampling: dict = Group(Sampling),
    max_tries: Annotated[
        int | None,
        typer.Option(
            help="Rejection sampling: draws per sample before giving up (default: until one fits, as the paper); a "
            "sample that never fit is reported and left out of accuracy."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences decoded together.")] = 8,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    output: Annotated[str | None, typer.Option(help="Run directory (re-running the same command resumes it).")] = None,
    only_current: Annotated[
        bool,
        typer.Option(
            "--only-current", help="Summarize only this command's settings, not every setting in the run directory."
        ),
    ] = False,
    search: dict = Group(SearchSpec),
    width: Annotated[str, typer.Option(help="REBASE widths (trajectories kept), comma-separated.")] = "16",
    report_to: Annotated[
        str,
        typer.Option(help="none, wandb or tensorboard: also log accuracy against thinking tokens there (as s1 train)."),
    ] = "none",
    plot_tokens: Annotated[
        str,
        typer.Option(
            help="Plot x-axis: generated tokens, or total tokens processed (prompt, generated, reward model)."
        ),
    ] = "generated",
    share_sweep: Annotated[
        bool,
        typer.Option(
            "--share-sweep/--no-share-sweep",
            help="Settings that differ only in cap and Wait count think once per problem and branch off where "
            "their budget differs (the same samples, less compute); --no-share-sweep runs each on its own.",
        ),
    ] = True,
) -> None:
    """Measure accuracy against thinking: sweep budgets and methods, grade, summarize, plot."""
    from s1.data.benchmarks import task_fields
    from s1.evaluate.config import EvalConfig
    from s1.evaluate.runner import run_eval
    from s1.report import trackers
    from s1.report.lm_eval_results import write_results
    from s1.report.run_report import write_run_report

    trackers.check(report_to)  # a missing package is said before any model loads

    config = EvalConfig(
        benchmarks=names(benchmark),
        model=model,
        engine=engine,
        format=format,
        device=device,
        dtype=dtype,
        methods=names(method),
        **forcing,
        **sampling,
        **search,
        steps=int_list(steps, "--steps") if steps else None,
        tokens_per_step=tokens_per_step,
        samples=samples,
        max_tries=max_tries,
        batch_size=batch_size,
        system=system,
        data=data,
        data_dir=data_dir,
        question_field=question_field,
        answer_field=answer_field,
        id_field=id_field,
        answer_kind=answer_kind,
        limit=limit,
        ids=names(ids) if ids is not None else None,
        base_urls=list(base_urls) if base_urls else None,
        include_path=include_path,
        remote_mode=remote_mode,
        only_current=only_current,
        widths=int_list(width, "--width"),
        plot_tokens=plot_tokens,
        share_sweep=share_sweep,
    )
    if output is None:
        name = Path(data).stem if data else "-".join(Path(b).stem for b in config.benchmarks)
        output = str(Path("runs") / f"{Path(model).name}-{name}")
    summary = run_eval(config, output)
    paper = paper_numbers(ctx)
    if paper is not None:  # the numbers the recipe should reproduce, for s1 report's paper column
        from s1.report.paper import write_paper

        write_paper(output, paper)
    out.print(write_run_report(output, summary), markup=False)  # summary.md and scaling.png: report/ draws
    tasks = {} if data else {f.get("task", b): f for b in config.benchmarks for f in [task_fields(b, include_path)]}
    results = write_results(output, summary, tasks)  # lm-eval's schema, for dashboards that read its files
    trackers.report(summary, output, report_to)
    cut = [(name, r) for name, bench in summary.benchmarks.items() for r in bench.settings if r.cut_answers]
    if cut:
        from s1.report.markdown import cut_of

        shown = "; ".join(f"{name} {r.method} {r.setting}: {cut_of(r)}" for name, r in cut[:5])
        more = f"; {len(cut) - 5} more settings in summary.md" if len(cut) > 5 else ""
        err.print(
            f"Answers cut by a token limit (cut_answers in summary.json): {shown}{more}; raise --max-answer-tokens "
            "or leave it unset (the context's room after the cap).",
            style="yellow",
        )
    err.print(
        f"Run directory: {output} (samples.jsonl, summary.json, summary.md, scaling.png, {results.name})", style="cyan"
    )
