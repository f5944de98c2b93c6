"""`s1 demo`: the whole loop offline on a CPU (curate, train, evaluate), resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s1.cli.common import app, err, out


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where the demo writes everything; a second run resumes it.")
    ] = Path("runs/demo"),
    quick: Annotated[
        bool, typer.Option(help="A smaller pool and a few training steps: the mechanics in about a minute.")
    ] = False,
) -> None:
    """The whole s1 loop offline on a CPU: make a toy pool, curate it, train a tiny model, evaluate test-time
    scaling."""
    from s1.demo import demo as run_demo
    from s1.report.markdown import summary_markdown

    result = run_demo(out_dir, quick=quick, say=lambda line: err.print(line, style="bold cyan", markup=False))
    for summary, run in zip(result["summaries"], result["runs"]):
        out.print(summary_markdown(summary, title=run.name, notes=False), markup=False)
    took = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result["times"].items())
    err.print(f"Done in {sum(result['times'].values()):.0f} s ({took}).", style="cyan")
    err.print(
        f"Report: {result['html']} (open it in a browser); "
        f"all curves on one plot: {result['html'].parent / 'scaling.png'}",
        style="cyan",
    )
