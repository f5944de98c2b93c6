"""Budget-forcing speed: plain `transformers.generate` vs the in-flight engine vs the re-prefill loop.

Prints one table (tokens/s, ms per decode step, ratios) and names the machine. On CPU it runs the
embedded SmolLM2-135M; `--model qwen0.5b-random` builds a random-init Qwen2.5-0.5B (speed depends on
the architecture, not the weights), which is what the GPU numbers in BENCHMARKS.md use.

    python bench/forcing.py [--model smollm2|qwen0.5b-random|DIR] [--batch 1 8] [--extensions 2 4] [--repeat 3]

`--repeat N` runs each method N times, one after the other, and keeps its fastest run: on a shared VM
whose neighbours come and go, single runs of the same code vary by 20%. (The in-flight engine's later runs
find its weights already packed and its thread count settled; `generate` has nothing to warm.)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from s1 import BudgetForcing, generate
from s1.core.models import load_hf, pick_device, pick_dtype
from s1.engines.hf import HFEngine
from s1.engines.reprefill import ReprefillEngine

QUESTIONS = [
    "What is 7*8?",
    "How many positive divisors does 360 have?",
    "Find the remainder when 2^100 is divided by 7.",
    "A train travels 120 km in 1.5 hours. What is its average speed?",
    "What is the sum of the interior angles of a hexagon?",
    "Solve for x: 3x + 5 = 20.",
    "How many ways can 5 people sit in a row?",
    "What is the least common multiple of 12 and 18?",
]


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def load(name: str):
    if name != "qwen0.5b-random":
        return load_hf(name)
    from transformers import AutoModelForCausalLM, Qwen2Config

    _, tokenizer = load_hf("smollm2")  # any tokenizer whose ids fit the vocabulary will do
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        rope_theta=1e6,
        bos_token_id=1,
        eos_token_id=2,
    )
    device = pick_device()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=pick_dtype("auto", device)).to(device).eval()
    return model, tokenizer


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeat: int = 1):
    """The fastest of `repeat` calls' seconds, and the last call's result."""
    best = None
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return best, result


def plain_generate(model, tokenizer, engine, questions, new_tokens: int, repeat: int = 1) -> float:
    """`generate` on the same prompts, made to produce exactly `new_tokens` per row (EOS suppressed)."""
    from s1.core.sampling import Sampling
    from s1.engines.base import make_request

    forcing = BudgetForcing(max_thinking_tokens=1)
    prompts = [
        make_request(tokenizer, engine.format_tokens, engine.context_length, q, forcing, Sampling()).prompt_token_ids
        for q in questions
    ]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[2] * (width - len(p)) + p for p in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    seconds, _ = timed(
        lambda: model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=2,
        ),
        repeat,
    )
    return seconds


def llamacpp_engine(name: str, parallel: int):
    """The llama.cpp engine on the same GGUF, when the model is one and llama-cpp-python is installed."""
    try:
        from s1.core.models import resolve
        from s1.engines.llamacpp import LlamaCppEngine

        if resolve(name).kind != "gguf":
            return None
        return LlamaCppEngine.load(name, parallel=parallel, ctx_size=2048 * parallel)
    except Exception:
        return None


def run(args) -> None:
    model, tokenizer = load(args.model)
    inflight, reprefill = HFEngine(model, tokenizer), ReprefillEngine.from_model(model, tokenizer)
    llamacpp = llamacpp_engine(args.model, max(args.batch))
    print(f"machine: {machine()}")
    print(
        f"model: {args.model}, dtype {next(model.parameters()).dtype}, "
        f"cap {args.cap} thinking + {args.answer} answer tokens\n"
    )
    header = (
        "| batch | forced ext. | method | tokens | seconds | tokens/s | ms/step "
        "| tokens/s vs generate | tokens/s vs re-prefill |"
    )
    print(header)
    print("|" + "---|" * 9)
    generate(QUESTIONS[:1], inflight, BudgetForcing(max_thinking_tokens=4, max_answer_tokens=2))  # warm-up
    for batch in args.batch:
        questions = (QUESTIONS * ((batch + len(QUESTIONS) - 1) // len(QUESTIONS)))[:batch]
        for extensions in args.extensions:
            # min_thinking_tokens = cap keeps every row thinking to the cap, so rows (and methods) do the same
            # work; num_ignore turns at least `extensions` of the model's attempts to stop into forced "Wait"s.
            forcing = BudgetForcing(
                max_thinking_tokens=args.cap,
                min_thinking_tokens=args.cap,
                num_ignore=extensions,
                max_answer_tokens=args.answer,
            )
            rows = {}
            t_in, out_in = timed(lambda: generate(questions, inflight, forcing, batch_size=batch), args.repeat)
            t_re, out_re = timed(lambda: generate(questions, reprefill, forcing, batch_size=batch), args.repeat)
            same = all(a.output_token_ids == b.output_token_ids for a, b in zip(out_in, out_re))
            steps = max(len(c.output_token_ids) for c in out_in)
            tokens = sum(len(c.output_token_ids) for c in out_in)
            used = statistics.mean(c.extensions_used for c in out_in)
            t_plain = plain_generate(model, tokenizer, inflight, questions, steps, args.repeat)
            rows["generate"] = (batch * steps, t_plain)
            rows["in-flight"] = (tokens, t_in)
            rows["re-prefill"] = (tokens, t_re)
            if llamacpp is not None:  # the 4-bit GGUF, `batch` sequences in one llama_batch

                def cpp():
                    llamacpp.runtime.clear()  # no prompt prefix kept from the previous run or row of the table
                    return generate(questions, llamacpp, forcing, batch_size=batch)

                t_cpp, out_cpp = timed(cpp, args.repeat)
                rows["llama.cpp in-flight (Q4_1)"] = (sum(len(c.output_token_ids) for c in out_cpp), t_cpp)
            rate = {method: n / seconds for method, (n, seconds) in rows.items()}
            for method, (n, seconds) in rows.items():
                print(
                    f"| {batch} | {extensions} (used {used:.1f}) | {method} | {n} | {seconds:.2f} "
                    f"| {rate[method]:.1f} | "
                    f"{1000 * seconds / steps:.1f} | {rate[method] / rate['generate']:.2f}x "
                    f"| {rate[method] / rate['re-prefill']:.2f}x |"
                )
            if not same:
                print(
                    f"| {batch} | {extensions} "
                    "| note: in-flight and re-prefill outputs differ (sampling noise on this device) |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--extensions", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--cap", type=int, default=128)
    parser.add_argument("--answer", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1, help="Runs per method; the fastest is kept.")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    run(args)


if __name__ == "__main__":
    main()
