"""Size a training run before renting GPUs: tokens/s and peak memory of `s1 train` for a model and recipe, and
what the paper's run (1,000 examples x 5 epochs) would take at that speed.

Trains a few steps on real reasoning traces (the 100 MATH problems of ../shared/data/math_cot_100.jsonl,
each with a model's own worked solution as its thinking), through the same `s1 train` users run, alone or
under `accelerate launch`, and reads the per-process records the run writes (OUTPUT/ranks/rank-N.json).

    python bench/train.py [--model smollm2] [--recipe configs/recipes/cpu-tiny.yaml] [--steps 6]
                          [--block-size 1024]
                          [--launch "accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 8"]
                          [--set key=value ...]

The paper's reference: s1-32B, 1,000 s1K examples x 5 epochs in 26 minutes on 16 H100s.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from forcing import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "math_cot_100.jsonl"
PAPER_EXAMPLES, PAPER_EPOCHS, PAPER_MINUTES, PAPER_GPUS = 1000, 5, 26, 16


def traces(path: Path, out: Path) -> Path:
    """question / thinking / answer records from MATH problems and one real response each."""
    with path.open() as src, out.open("w") as dst:
        for line in src:
            row = json.loads(line)
            dst.write(
                json.dumps({"question": row["question"], "thinking": row["response"][0], "answer": str(row["gt"])})
                + "\n"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--recipe", default=str(ROOT / "configs/recipes/cpu-tiny.yaml"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2, help="global batch")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument(
        "--launch", default="", help="a launcher command line put before `-m s1 train`, e.g. accelerate launch ..."
    )
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE passed to s1 train --set")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = traces(DATA, Path(tmp) / "traces.jsonl")
        out = Path(tmp) / "run"
        launcher = shlex.split(args.launch) if args.launch else [sys.executable]
        command = [
            *launcher,
            "-m",
            "s1",
            "train",
            "--config",
            args.recipe,
            "--model",
            args.model,
            "--data",
            str(data),
            "--output",
            str(out),
            "--max-steps",
            str(args.steps),
            "--batch-size",
            str(args.batch_size),
            "--block-size",
            str(args.block_size),
            "--save-steps",
            str(args.steps + 1),
            "--logging-steps",
            "1",
            *[f"--set={pair}" for pair in args.set],
        ]
        started = time.perf_counter()
        run = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1")
        )
        wall = time.perf_counter() - started
        if run.returncode:
            sys.exit(f"s1 train failed:\n{run.stderr[-3000:]}")
        ranks = [json.loads(p.read_text()) for p in sorted((out / "ranks").glob("rank-*.json"))]
        avg_tokens = tokens_per_example(args.model, data, args.block_size)

    record = ranks[0]
    tokens_per_s = record["tokens_seen"] / record["train_seconds"]
    step_ms = 1000 * record["train_seconds"] / args.steps
    paper_tokens = PAPER_EXAMPLES * PAPER_EPOCHS * avg_tokens
    print(f"Machine: {machine()}")
    print(
        f"Model {args.model}, recipe {Path(args.recipe).name}, {record['kind']} x {record['world_size']} process(es), "
        f"global batch {args.batch_size}, block {args.block_size}, {args.steps} steps ({wall:.0f} s with start-up)\n"
    )
    print("| tokens/s (all processes) | ms / optimizer step | peak memory per process | activation checkpointing |")
    print("|---:|---:|---:|---|")
    peak = max(r["peak_memory_bytes"] for r in ranks) / 2**30
    print(f"| {tokens_per_s:,.0f} | {step_ms:,.0f} | {peak:.2f} GiB | {record['activation_checkpointing']} |")
    print(
        f"\nAt this speed, the paper's run ({PAPER_EXAMPLES:,} examples x {PAPER_EPOCHS} epochs, "
        f"about {avg_tokens:,.0f} tokens "
        f"per example here, {paper_tokens / 1e6:.1f}M tokens) "
        f"takes {paper_tokens / tokens_per_s / 3600:.1f} h on this setup; "
        f"the paper: {PAPER_MINUTES} min on {PAPER_GPUS} H100s for s1-32B on s1K (about 9,000 tokens per example)."
    )


def tokens_per_example(model: str, data: Path, block: int) -> float:
    from s1.core.formats import S1
    from s1.core.models import load_tokenizer
    from s1.train.data import render_example

    tokenizer, _ = load_tokenizer(model)
    lengths = []
    for i, line in enumerate(data.read_text().splitlines()):
        ex = render_example(json.loads(line), i, tokenizer, S1)
        lengths.append(min(block, len(tokenizer.encode(ex["prompt"] + ex["completion"], add_special_tokens=False))))
    return sum(lengths) / len(lengths)


if __name__ == "__main__":
    main()
