"""`s1 curate`: the s1K pipeline from one YAML config, all stages or one at a time, and its status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s1.cli.common import app, err, out

curate_app = typer.Typer(
    no_args_is_help=True, help="Curate a small, hard, diverse reasoning set (s1K) from a raw pool."
)
app.add_typer(curate_app, name="curate")

ConfigArg = Annotated[Path, typer.Argument(help="The curation config (YAML); see configs/curate/embedded.yaml.")]
OutputOpt = Annotated[
    str | None, typer.Option(help="Run directory (default: the config's output); re-running resumes it.")
]


def _curate(config_path: Path, output: str | None, stages: list[str] | None) -> None:
    from s1.curate import load_config, run

    config = load_config(config_path, output)
    run(config, stages, say=lambda line: err.print(line, style="cyan", markup=False))
    out_dir = Path(config.output)
    if stages is None or "export" in stages:
        out.print((out_dir / "report.md").read_text(), markup=False)
    err.print(
        f"Run directory: {out_dir} (curate.sqlite, s1k.jsonl, report.json, report.md, trace_lengths.png)", style="cyan"
    )


@curate_app.command("run")
def curate_run(config: ConfigArg, output: OutputOpt = None) -> None:
    """Run every stage in order: collect, decontaminate, traces, quality, difficulty, diversity, select, export."""
    _curate(config, output, None)


def _stage_command(stage: str, help_text: str) -> None:
    def command(config: ConfigArg, output: OutputOpt = None) -> None:
        _curate(config, output, [stage])

    command.__doc__ = help_text
    curate_app.command(stage)(command)


for _stage, _help in (
    ("collect", "Read every source into one schema; drop exact duplicate questions."),
    ("decontaminate", "Drop questions sharing a word 8-gram with an evaluation set or an earlier source."),
    ("traces", "The teacher writes a thinking trace and an attempt per question."),
    ("quality", "Drop questions by the paper's rules and rows missing a trace, attempt or reference."),
    ("difficulty", "Drop questions a solver model gets right; count trace lengths in the student's tokenizer."),
    ("diversity", "Put each question in one domain (MSC codes) with the classifier model."),
    ("select", "Choose N questions: Algorithm 1 (or the ablations: random, longest, diverse, full, notebook)."),
    ("export", "Write s1k.jsonl in s1K's format and the report."),
):
    _stage_command(_stage, _help)


@curate_app.command("status")
def curate_status(directory: Annotated[Path, typer.Argument(help="A run directory of s1 curate.")]) -> None:
    """Print the counts of a curation run (safe while it runs)."""
    from s1.curate import status

    out.print(status(directory), markup=False)
