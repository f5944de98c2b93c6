"""Curation overhead: the pipeline's own work per question when every model call is answered from the cache.

A synthetic pool (default 59,000 rows, the size of the paper's) goes through all stages three times:
1. fill: a synthetic engine answers every call at once; its replies go into the call cache as real
   replies would, and math-verify grades every solver reply once (grades are memoized in the store).
   This pass is the first run's own work: storing calls and grading, not a model's speed;
2. cached: the same command again; every model call and grade comes from the store (what resuming a
   crashed run costs per stage);
3. re-run: the same again, to show it is stable.
Pass 2 is the pipeline's overhead with model calls answered from the cache; the target is under 60 s.

    python bench/curate.py [--rows 59000] [--keep DIR]

The synthetic engine stands in for the models only here (tests use real ones): it answers in
microseconds, so what is timed is everything around the model calls.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from forcing import machine  # noqa: E402  (bench/forcing.py, beside this script)
from s1.core.formats import FormatTokens, get_format  # noqa: E402
from s1.core.models import load_tokenizer  # noqa: E402
from s1.curate import load_config, run  # noqa: E402
from s1.curate.calls import Engines  # noqa: E402
from s1.curate.store import STAGES  # noqa: E402
from s1.engines.base import Completion  # noqa: E402

WORDS = (
    "integer real triangle circle prime sum product sequence function polynomial root angle area probability "
    "divisor remainder digit chord tangent vertex matrix vector series limit maximum minimum equation graph "
    "set subset coin dice ball box path grid square cube sphere plane line point ratio mean median"
).split()


def synthetic_pool(path: Path, rows: int, rng: random.Random) -> None:
    """Distinct questions of 30-80 words with numbers and LaTeX; 80% with a short answer, some rule-breakers."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            words = [rng.choice(WORDS) for _ in range(rng.randint(30, 80))]
            for _ in range(4):
                words.insert(rng.randrange(len(words)), f"${rng.randint(2, 999)}^{{{rng.randint(2, 9)}}}$")
            question = f"Problem {i}: " + " ".join(words) + "?"
            if i % 500 == 1:
                question += " [asy] draw((0,0)--(1,1)); [/asy]"
            if i % 700 == 2:
                question = f"p{rng.randint(1, 999)}. " + question
            if i % 1000 == 3 and i > 3:
                question = f"Problem {i - 1000}: duplicate"  # an exact duplicate pair every 1000 rows
            answer = str(rng.randint(0, 999)) if rng.random() < 0.8 else None
            record = {
                "id": i,
                "question": question,
                "solution": "By symmetry ... " + " ".join(words[:20]),
                "answer": answer,
            }
            f.write(json.dumps(record) + "\n")


class SyntheticEngine:
    """Answers every call at once with plausible text: long traces, boxed answers, codes and verdicts."""

    def __init__(self, tokenizer, seed: int = 0):
        self.tokenizer = tokenizer
        self.fmt = get_format("s1")
        self.format_tokens = FormatTokens.build(tokenizer, self.fmt)
        self.context_length = 1 << 20
        self.rng = random.Random(seed)

    def generate(self, requests, batch_size=8, on_token=None, on_completion=None):
        out = []
        for i, r in enumerate(requests):
            thinking = "" if r.plain else " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(50, 600)))
            answer = f"So the answer is \\boxed{{{self.rng.randint(0, 999)}}}."
            c = Completion(
                prompt=r.prompt,
                prompt_token_ids=[],
                output_token_ids=[],
                thinking=thinking,
                answer=answer,
                thinking_tokens=len(thinking.split()),
                answer_tokens=8,
                extensions_used=0,
                capped=False,
                finish_reason="stop",
            )
            out.append(c)
            if on_completion:
                on_completion(i, c)
        return out

    def choose(self, prompt_ids, options):
        return self.rng.randrange(len(options))


def write_config(folder: Path, pool: Path) -> Path:
    role = {"engine": "llamacpp", "model": "smollm2", "concurrency": 256}
    config = {
        "output": str(folder / "run"),
        "sources": [{"name": "synthetic", "path": str(pool)}],
        "eval_sets": ["math500", "aime24", "aime25"],
        "data_dir": str(DATA),
        "domains": str(DATA / "msc.json"),
        "student": "smollm2",
        "roles": {
            "teacher": {**role, "max_thinking_tokens": 4096},
            "solvers": [role, {**role, "seed": 1}],
            "judge": role,
            "classifier": role,
        },
        "selection": {"n": 1000, "strategy": "s1", "seed": 0},
    }
    path = folder / "curate.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def timed_run(config, engines: Engines | None) -> dict[str, float]:
    times: dict[str, float] = {}
    started = time.perf_counter()

    def say(line: str) -> None:
        nonlocal started
        stage = line.split(":", 1)[0]
        times[stage] = time.perf_counter() - started
        started = time.perf_counter()

    report = run(config, show_progress=False, say=say, engines=engines)
    times["(calls sent)"] = report["calls_total"]["sent"]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=59_000)
    parser.add_argument("--keep", type=Path, help="Keep the run here instead of a temporary folder.")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="s1-bench-curate-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        pool = folder / "pool.jsonl"
        synthetic_pool(pool, args.rows, random.Random(0))
        config = load_config(write_config(folder, pool))
        tokenizer, _ = load_tokenizer("smollm2")
        engines = Engines()
        engines.put(config.roles.teacher, SyntheticEngine(tokenizer))
        passes = {"fill": timed_run(config, engines)}
        sent_before = passes["fill"]["(calls sent)"]
        for name in ("cached", "re-run"):
            passes[name] = timed_run(config, Engines())  # an empty registry: a cache miss would load a real model
            assert passes[name]["(calls sent)"] == sent_before, "a model call was not answered from the cache"
        report = json.loads((folder / "run" / "report.json").read_text())
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"machine: {machine()}")
    print(
        f"pool: {args.rows} synthetic rows; selected {report['selected']}; "
        f"distinct model calls {sum(c['keys'] for c in report['calls'].values())}"
    )
    print()
    print(f"| stage | {' | '.join(f'{p} s' for p in passes)} | {' | '.join(f'{p} µs/row' for p in passes)} |")
    print("|---|" + "---:|" * (2 * len(passes)))
    for stage in STAGES:
        cells = [f"{passes[p].get(stage, 0):.2f}" for p in passes] + [
            f"{1e6 * passes[p].get(stage, 0) / args.rows:.0f}" for p in passes
        ]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    totals = {p: sum(v for k, v in t.items() if k in STAGES) for p, t in passes.items()}
    print(
        "| **all stages** | "
        + " | ".join(f"**{totals[p]:.1f}**" for p in passes)
        + " | "
        + " | ".join(f"**{1e6 * totals[p] / args.rows:.0f}**" for p in passes)
        + " |"
    )
    print()
    print(
        "target: the cached passes under 60 s for all stages; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
