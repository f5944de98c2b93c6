"""A run's results in lm-evaluation-harness's results-file schema, so dashboards that read lm-eval's files read s1's.

lm-eval writes `results_<date>.json` with `results` (per task, `"<metric>,<filter>"` keys and their
`_stderr`), `configs`, `versions`, `n-shot`, `higher_is_better`, `n-samples`, `config`, `git_hash` and
`date`. s1 writes the same beside its run directory's own files after every `s1 eval`: each setting of a
method (`budget_forcing tokens=512`) takes the place of lm-eval's filter name, because it is a variant of
one task's score, and its mean thinking tokens sit beside its accuracy. The metric is `exact_match`, as
lm-eval names the score of a generation task (README: "lm-eval's task files and results").
"""

from __future__ import annotations

import datetime
import json
import math
import subprocess
import time
from pathlib import Path

from s1.core.rundir import write_atomic
from s1.core.version import __version__
from s1.evaluate.records import Summary, finite

METRIC = "exact_match"


def git_hash() -> str | None:
    """The short commit of the s1 source that ran, when it runs from a git checkout (lm-eval records its own)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _stderr(accuracy: float, n: int | None) -> float | str:
    """lm-eval's mean_stderr: the sample standard deviation over sqrt(n), for 0/1 scores."""
    if not n or n < 2:
        return "N/A"
    return math.sqrt(accuracy * (1 - accuracy) * n / (n - 1) / n)


def results_document(summary: Summary, tasks: dict[str, dict] | None = None, now: float | None = None) -> dict:
    """The lm-eval results object for a summary; `tasks` gives each benchmark's task config (its YAML fields)."""
    tasks = tasks or {}
    results, configs, versions, shots, better, counts = {}, {}, {}, {}, {}, {}
    for name, bench in summary.benchmarks.items():
        entry: dict = {"alias": name}
        for row in bench.settings:
            variant = f"{row.method} {row.setting}"
            score = row.accuracy / 100  # s1's tables show percent; lm-eval's scores are fractions
            entry[f"{METRIC},{variant}"] = score
            entry[f"{METRIC}_stderr,{variant}"] = _stderr(score, row.problems)
            entry[f"mean_thinking_tokens,{variant}"] = row.mean_thinking_tokens
        results[name] = entry
        config = {k: v for k, v in (tasks.get(name) or {"task": name}).items() if _plain(v)}
        configs[name] = {"task": name, "output_type": "generate_until", **config}
        metadata = config.get("metadata")
        versions[name] = metadata.get("version", 1.0) if isinstance(metadata, dict) else 1.0
        shots[name] = int(config.get("num_fewshot") or 0)
        better[name] = {METRIC: True, "mean_thinking_tokens": False}
        counts[name] = {"original": bench.problems, "effective": bench.problems}
    now = time.time() if now is None else now
    return {
        "results": results,
        "group_subtasks": {name: [] for name in results},
        "configs": configs,
        "versions": versions,
        "n-shot": shots,
        "higher_is_better": better,
        "n-samples": counts,
        "config": {
            "model": summary.config.get("engine", "s1"),
            "model_args": f"pretrained={summary.model}",
            "batch_size": summary.config.get("batch_size"),
            "limit": summary.config.get("limit"),
            "s1": summary.config,
        },
        "git_hash": git_hash(),
        "date": now,
        "model_name": summary.model,
        "model_name_sanitized": str(summary.model or "").replace("/", "__"),
        "s1_version": __version__,
    }


def _plain(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def write_results(run: str | Path, summary: Summary, tasks: dict[str, dict] | None = None) -> Path:
    """RUN/results_<date>.json (lm-eval's name: one file per invocation, the newest last in name order)."""
    now = time.time()
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")
    path = Path(run) / f"results_{stamp}.json"
    document = finite(results_document(summary, tasks, now))  # NaN is not JSON: an undefined score is null
    write_atomic(path, json.dumps(document, indent=2, default=str, allow_nan=False) + "\n")
    return path
