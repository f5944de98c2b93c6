"""What a search costs in prompt processing: REBASE and N parallel trajectories, with the engine forking
paused trajectories (each child continues its parent's cache) and with plain resubmission (each child
sends prompt + path again and the engine processes all of it).

Same problems, seeds and scorer both ways (a programmatic scorer, so only the generator is timed). Prints,
per mode: tokens generated, prompt tokens processed, their ratio, wall time and generated tokens/s.

    python bench/search.py [--problems 3] [--width 8] [--step-tokens 32] [--cap 128]

The transformers engine only: llama.cpp keeps a finished stream's prefix for the next prompt in that
stream by itself (one child per parent continues there), so it has no plain mode to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from forcing import machine  # noqa: E402
from s1 import BudgetForcing  # noqa: E402
from s1.core.sampling import Sampling
from s1.engines.base import StepRule, make_request  # noqa: E402
from s1.engines.hf import HELD_BYTES, HFEngine  # noqa: E402
from s1.evaluate.rewards import CallableReward  # noqa: E402
from s1.evaluate.search import RebaseSettings, rebase, sample  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500.jsonl"


def scorer() -> CallableReward:
    """Deterministic, free scores that still vary between steps (longer, more symbolic steps score higher)."""

    def score(question, steps):
        return [min(1.0, (len(s) + 5 * sum(c in "=+-*/^" for c in s)) / 200) for s in steps]

    return CallableReward(score, "bench")


def run(engine, fork: bool, problems: list[dict], args) -> dict:
    engine.paused.max_bytes = HELD_BYTES if fork else 0
    forcing = BudgetForcing(max_thinking_tokens=args.cap, max_answer_tokens=32)
    totals = {"rebase": [0, 0, 0.0], "parallel": [0, 0, 0.0]}
    for p in problems:
        request = make_request(
            engine.tokenizer, engine.format_tokens, engine.context_length, p["problem"], forcing, Sampling(1.0)
        )
        start = time.perf_counter()
        settings = RebaseSettings(args.width, StepRule(max_tokens=args.step_tokens), max_depth=32)
        tree = rebase(
            engine,
            request,
            p["problem"],
            scorer(),
            settings,
            lambda node, j: Sampling(1.0, seed=1000 * (node or 0) + j),
            batch_size=args.width,
        )
        totals["rebase"][0] += tree.generated_tokens
        totals["rebase"][1] += tree.prefill_tokens
        totals["rebase"][2] += time.perf_counter() - start
        start = time.perf_counter()
        samplings = [Sampling(1.0, seed=j) for j in range(args.width)]
        if fork:
            flat = sample(engine, request, p["problem"], samplings, batch_size=args.width)
            generated, prefill = flat.generated_tokens, flat.prefill_tokens
        else:  # every trajectory sends the prompt itself
            done = engine.generate([replace(request, sampling=s) for s in samplings], batch_size=args.width)
            generated, prefill = sum(len(c.output_token_ids) for c in done), sum(c.prefill_tokens for c in done)
        totals["parallel"][0] += generated
        totals["parallel"][1] += prefill
        totals["parallel"][2] += time.perf_counter() - start
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=3)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--step-tokens", type=int, default=32)
    parser.add_argument("--cap", type=int, default=128)
    args = parser.parse_args()
    problems = [json.loads(line) for line in DATA.read_text().splitlines()[: args.problems]]
    engine = HFEngine.load("smollm2")
    print(f"machine: {machine()}")
    print(
        f"engine hf (embedded SmolLM2-135M), {args.problems} MATH500 problems, width/N {args.width}, "
        f"steps <= {args.step_tokens} tokens, "
        f"thinking cap {args.cap}, temperature 1\n"
    )
    print(
        "| search | prompt handling | generated tokens | prompt tokens processed | processed / generated "
        "| wall s | generated tok/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for fork in (True, False):
        totals = run(engine, fork, problems, args)
        for name, (generated, prefill, seconds) in totals.items():
            mode = "fork (children continue the parent's cache)" if fork else "plain resubmission"
            print(
                f"| {name} | {mode} | {generated} | {prefill} | {prefill / max(generated, 1):.2f} | {seconds:.1f} | "
                f"{generated / seconds:.1f} |"
            )


if __name__ == "__main__":
    main()
