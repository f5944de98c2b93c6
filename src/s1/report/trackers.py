"""`s1 eval --report-to wandb|tensorboard`: a run's scores sent where its training curves already go.

The same names as `s1 train --report-to` (transformers' `report_to`). Each setting's accuracy is logged
against its mean thinking tokens, the paper's x-axis, one series per benchmark and method. A tracker whose
package is missing is one sentence before any model loads (`check`), never a traceback after the run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from s1.core.errors import UserError
from s1.evaluate.records import Summary

TRACKERS = {"none": None, "wandb": "wandb", "tensorboard": "tensorboard"}
"""--report-to value -> the package it needs."""


def check(report_to: str) -> None:
    if report_to not in TRACKERS:
        raise UserError(f"--report-to must be one of {', '.join(TRACKERS)}, got {report_to!r}.")
    package = TRACKERS[report_to]
    if package and importlib.util.find_spec(package) is None:
        raise UserError(
            f"--report-to {report_to} needs the {package} package, which is not installed; "
            f"pip install {package}, or leave --report-to out."
        )


def report(summary: Summary, run: str | Path, report_to: str) -> None:
    """Log every complete setting's accuracy at its mean thinking tokens."""
    check(report_to)
    points = [
        (f"{name}/{row.method}", row.accuracy, row.mean_thinking_tokens)
        for name, bench in summary.benchmarks.items()
        for row in bench.settings
        if row.complete
    ]
    if report_to == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(Path(run) / "tensorboard")) as writer:
            for series, accuracy, tokens in points:
                writer.add_scalar(f"{series}/accuracy", accuracy, global_step=round(tokens))
    elif report_to == "wandb":
        import wandb

        with wandb.init(project="s1", name=Path(run).name, dir=str(run), config=summary.config) as session:
            for series, accuracy, tokens in points:
                session.log({f"{series}/accuracy": accuracy, f"{series}/mean_thinking_tokens": tokens})
