"""How long running streams wait for a token while a long prompt joins their batch.

Starts `--streams` sequences thinking (min_thinking = cap, so none stops), adds one `--prompt`-token
prompt once each has written five tokens, and records every token's arrival until the long prompt's
first token. Prints, per engine, the time that prompt took to join and the gaps between consecutive
tokens of the running streams meanwhile (the join counted as a gap until their first token after it).

    python bench/stall.py [--engine llamacpp hf] [--prompt 6500] [--streams 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from forcing import machine  # noqa: E402
from s1 import BudgetForcing  # noqa: E402
from s1.core.sampling import Sampling
from s1.engines.base import make_request, prepare_ids  # noqa: E402

QUESTIONS = [
    "What is 7*8?",
    "Name three primes.",
    "Why is the sea salty?",
    "What is 12 squared?",
    "Is 91 prime?",
    "Count to five.",
    "What is the capital of France?",
    "Spell 'cat' backwards.",
]


def load(engine: str, streams: int, prompt: int):
    if engine == "llamacpp":
        from s1.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine.load("smollm2", parallel=streams + 1, ctx_size=(streams + 1) * (prompt + 1024))
    from s1.engines.hf import HFEngine

    return HFEngine.load("smollm2")


def measure(engine, streams: int, prompt: int) -> tuple[float, list[float], int]:
    seen: dict[int, list[float]] = {}
    loop = engine.loop(streams + 1, on_token=lambda i, token, state: seen.setdefault(i, []).append(time.perf_counter()))
    forcing = BudgetForcing(max_thinking_tokens=4000, min_thinking_tokens=4000, max_answer_tokens=4)
    for i in range(streams):
        loop.add(
            i,
            make_request(
                engine.tokenizer, engine.format_tokens, engine.context_length, QUESTIONS[i % 8], forcing, Sampling()
            ),
        )
    while streams and min(len(seen.get(i, [])) for i in range(streams)) < 5:
        loop.step()
    text = engine.tokenizer.encode(" ".join(QUESTIONS) * 2, add_special_tokens=False)
    ids = (text * (prompt // len(text) + 1))[:prompt]
    loop.add(
        -1,
        prepare_ids(
            engine.format_tokens, engine.context_length, "long", ids, BudgetForcing(max_thinking_tokens=4), Sampling()
        ),
    )
    joined, steps = time.perf_counter(), 0
    while -1 not in seen:
        loop.step()
        steps += 1
    done = time.perf_counter()
    gaps = []
    for i in range(streams):
        times = [joined] + [t for t in seen[i] if joined < t < done] + [done]
        gaps += [b - a for a, b in zip(times, times[1:])]
    for i in [*range(streams), -1]:
        loop.cancel(i)
    return done - joined, gaps, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", nargs="+", default=["llamacpp"], choices=["llamacpp", "hf"])
    parser.add_argument("--prompt", type=int, default=6500)
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"a {args.prompt}-token prompt joins {args.streams} running streams (SmolLM2-135M)\n")
    print("| engine | streams | join s | steps | stream tokens meanwhile | gap p50 s | gap p99 s | gap max s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.engine:
        engine = load(name, args.streams, args.prompt)
        for streams in sorted({0, args.streams}):
            seconds, gaps, steps = measure(engine, streams, args.prompt)
            if not gaps:
                print(f"| {name} | 0 (alone) | {seconds:.1f} | {steps} | - | - | - | - |")
                continue
            q = statistics.quantiles(gaps, n=100, method="inclusive")
            print(
                f"| {name} | {streams} | {seconds:.1f} | {steps} | {len(gaps) - streams} "
                f"| {q[49]:.2f} | {q[98]:.2f} | {max(gaps):.2f} |"
            )


if __name__ == "__main__":
    main()
