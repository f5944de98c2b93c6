"""The paper's numbers beside a run's own: a recipe's `paper:` block (configs/paper/), kept in the run
directory as paper.json by `s1 eval --config`, read by `s1 report` for its "paper" column.

The block's shape: `benchmarks: {name: {methods: {method: {control, scaling, performance}}, settings:
{"method label": accuracy}}}`, with free text beside it (`source`, `note`). The paper's Scaling is compared
with s1's points per doubling, the unit that reproduces its Table 3 (evaluate/summary.py's notes).
"""

from __future__ import annotations

import json
from pathlib import Path

from s1.core.rundir import write_atomic

FILE = "paper.json"


def write_paper(run: str | Path, block: dict) -> None:
    write_atomic(Path(run) / FILE, json.dumps(block, indent=2, ensure_ascii=False) + "\n")


def read_paper(run: str | Path) -> dict:
    """A run directory's paper numbers; {} when it has none or they cannot be read (the report still prints)."""
    try:
        block = json.loads((Path(run) / FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return block if isinstance(block, dict) and isinstance(block.get("benchmarks"), dict) else {}


def paper_accuracy(block: dict, benchmark: str, method: str, setting: str) -> float | None:
    value = ((block.get("benchmarks", {}).get(benchmark) or {}).get("settings") or {}).get(f"{method} {setting}")
    return value if isinstance(value, (int, float)) else None


def paper_metrics(block: dict, benchmark: str, method: str) -> str:
    """'Control / Scaling / Performance' as the paper gives them, '–' for what it does not."""
    metrics = ((block.get("benchmarks", {}).get(benchmark) or {}).get("methods") or {}).get(method)
    if not isinstance(metrics, dict):
        return "–"
    return " / ".join(_number(metrics.get(key)) for key in ("control", "scaling", "performance"))


def _number(value) -> str:
    return format(value, "g") if isinstance(value, (int, float)) else "–"
