"""`s1 report`: several runs of s1 eval side by side, on one plot, and as one HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s1.cli.common import app, err, out


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories written by s1 eval.")],
    plot: Annotated[Path, typer.Option(help="Where to draw all runs on one plot.")] = Path("report.png"),
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write one self-contained HTML page: plot, tables with confidence intervals, a sample browser.",
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="The HTML page's title.")] = None,
) -> None:
    """Print several runs' tables side by side and draw them on one plot (and, with --html, a page to share)."""
    from s1.report.compare import compare

    out.print(compare([str(r) for r in runs], plot), markup=False)
    err.print(f"Plot: {plot}", style="cyan")
    if html is not None:
        from s1.report.html import write_html

        err.print(f"HTML: {write_html([str(r) for r in runs], html, title)}", style="cyan")
