"""Runs curation stages in order over one store, with progress bars, and reports.

Every stage reads what it needs from the store and writes its verdict back; model calls go through
the call cache. So a stage can be run again at any time: it recomputes from the cache and makes only
the calls that never came back. After every stage the report is rewritten.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from s1.core.errors import UserError
from s1.core.rundir import append_history
from s1.curate import collect, decontaminate, difficulty, diversity, export, quality, selection, traces
from s1.curate.calls import Caller, Engines
from s1.curate.config import CurateConfig
from s1.curate.store import STAGES, STORE, Store

RUNNERS = {
    "collect": collect.run,
    "decontaminate": decontaminate.run,
    "traces": traces.run,
    "quality": quality.run,
    "difficulty": difficulty.run,
    "diversity": diversity.run,
    "select": selection.run,
    "export": export.run,
}
assert tuple(RUNNERS) == STAGES


class Context:
    """What the stages share during one run: the config, the store, loaded engines, the grader, progress."""

    def __init__(self, config: CurateConfig, store: Store, show_progress: bool, engines: Engines | None = None):
        self.config, self.store = config, store
        self.output = Path(config.output)
        self.engines = engines or Engines()
        self._grader = None
        self._callers: dict[str, Caller] = {}
        self._progress = None
        self.show_progress = show_progress

    def caller(self, name: str) -> Caller:
        """The caller of a role (teacher, judge, classifier, solverN); a fresh tally per stage."""
        roles = self.config.roles
        role = roles.solvers[int(name[6:])] if name.startswith("solver") else getattr(roles, name)
        caller = Caller(name, role, self.store, self.engines)
        self._callers[name] = caller
        return caller

    def grader(self):
        if self._grader is None:
            from s1.data.grading import Grader

            self._grader = Grader()
        return self._grader

    @contextlib.contextmanager
    def progress(self, description: str, total: int):
        """A progress bar for one step; yields advance(n)."""
        if self._progress is None or total == 0:
            yield lambda n=1: None
            return
        task = self._progress.add_task(description, total=total)
        yield lambda n=1: self._progress.update(task, advance=n)

    def __enter__(self) -> Context:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self.show_progress:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),  # stdout keeps only what the command prints as its result
                transient=False,
                redirect_stdout=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._grader is not None:
            self._grader.close()
        self.engines.close()


def run(
    config: CurateConfig,
    stages: list[str] | None = None,
    show_progress: bool = True,
    say=print,
    engines: Engines | None = None,
) -> dict:
    """Run `stages` (default: all, in order) into config.output; returns the report. `engines` may hold
    engines loaded already (`Engines.put`), which the roles naming them then use."""
    command = "run" if stages is None else " ".join(stages)
    stages = list(stages or STAGES)
    for stage in stages:
        if stage not in RUNNERS:
            raise UserError(f"Unknown stage {stage!r}; the stages are {', '.join(STAGES)}.")
    output = Path(config.output)
    with Store(output) as store:
        append_history(output, stages=stages, config=config.model_dump())
        with Context(config, store, show_progress, engines) as ctx:
            for stage in stages:
                if stage != "collect" and store.count() == 0:
                    raise UserError(_empty_pool(output, command, "collect" in stages))
                started = time.time()
                counts = RUNNERS[stage](ctx)
                store.record_stage(stage, started, counts)
                say(f"{stage}: {summary_line(stage, counts)} ({time.time() - started:.1f} s)")
                report = export.write_report(ctx)
    return report


def _empty_pool(output: Path, command: str, collected: bool) -> str:
    """Why there is nothing to curate, in the terms of the command that was run."""
    if collected:
        return (
            f"`s1 curate {command}` collected no questions into {output}; check the sources in the config "
            "(their paths, limits and question fields)."
        )
    return (
        f"The store in {output} holds no questions yet, so `s1 curate {command}` has nothing to work on; run "
        "`s1 curate collect` (or `s1 curate run`) with this config first."
    )


def summary_line(stage: str, counts: dict) -> str:
    keys = {
        "collect": ("pool", "duplicates"),
        "decontaminate": ("dropped",),
        "traces": ("questions", "failed"),
        "quality": ("checked", "dropped"),
        "difficulty": ("checked", "dropped", "kept"),
        "diversity": ("classified", "domains", "unknown"),
        "select": ("candidates", "selected", "domains"),
        "export": ("records",),
    }[stage]
    text = ", ".join(f"{k} {counts.get(k)}" for k in keys)
    calls = counts.get("calls") or {}
    if calls:
        sent = sum(c["sent"] for c in calls.values())
        cached = sum(c["from_cache"] for c in calls.values())
        text += f"; model calls sent {sent}, from cache {cached}"
    return text


def status(directory: str | Path) -> str:
    """Counts of a run directory, read without taking its lock (a run may be going on)."""
    path = Path(directory) / STORE
    if not path.is_file():
        raise UserError(
            f"{directory} holds no curation run ({STORE} is missing); pass the output directory of s1 curate."
        )
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        total = db.execute("SELECT COUNT(*) FROM questions").fetchone()[0]
        drops = db.execute(
            "SELECT dropped_by, COUNT(*) AS n FROM questions WHERE dropped_by IS NOT NULL GROUP BY dropped_by"
        ).fetchall()
        selected = db.execute("SELECT COUNT(*) FROM questions WHERE selected IS NOT NULL").fetchone()[0]
        calls = db.execute("SELECT status, COUNT(*) AS n FROM calls GROUP BY status").fetchall()
        runs = db.execute("SELECT stage, MAX(finished) AS at FROM stage_runs GROUP BY stage").fetchall()
        db.close()
    except sqlite3.Error as exc:
        raise UserError(f"{path} is not a readable curation store ({exc}); was it written by s1 curate?") from None
    dropped = {r["dropped_by"]: r["n"] for r in drops}
    done = {r["stage"]: r["at"] for r in runs}
    lines = [f"{directory}: {total} questions in the pool, {selected} selected"]
    left = total
    for stage in STAGES[:6]:
        left -= dropped.get(stage, 0)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(done[stage])) if stage in done else "not run"
        lines.append(f"  {stage:<14} dropped {dropped.get(stage, 0):>7}  left {left:>7}   last run: {when}")
    for stage in STAGES[6:]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(done[stage])) if stage in done else "not run"
        lines.append(f"  {stage:<14} last run: {when}")
    states = {r["status"]: r["n"] for r in calls}
    lines.append("  model calls: " + (", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"))
    return "\n".join(lines)
