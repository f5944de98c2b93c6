"""What sharing one trajectory per problem saves a budget sweep (docs/design.md, "Sweeps share one trajectory").

The same requests run twice through the hf engine, both ways in one `generate` call with the same batch
size: separately (every setting thinks from the prompt) and shared (`evaluate.sharing.share`: the largest
setting thinks, the others branch off it). Prints per model, sweep and decoding: tokens the model
generated, prompt tokens processed, wall time, the shared/separate ratios, and whether every sample came
out identical.

    python bench/sweep.py [--problems 16] [--models tiny,smollm2] [--caps 64,128,256,512]
                          [--waits 0,1,2,4] [--wait-cap 512] [--batch-size 8]

Sweeps: the caps at Wait 0 (a doubling cap sweep), and the Wait counts at --wait-cap. Models: `tiny`, a
2-layer random Llama on the embedded tokenizer whose end-of-thinking logits are scaled up (so it tries to
stop every few dozen tokens, as the Wait sweep needs); `smollm2`, the embedded SmolLM2-135M.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from s1 import BudgetForcing
from s1.core.models import load_hf
from s1.core.sampling import Sampling
from s1.engines.base import make_request
from s1.engines.hf import HFEngine
from s1.evaluate.sharing import share

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500.jsonl"
HOW = {"prefill_tokens", "shared_tokens"}


def tiny_model(tokenizer, path: Path):
    """A 2-layer random Llama that tries to end thinking often (its end tokens' output rows scaled up)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=1.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for token in (1, 2):
            model.lm_head.weight[token] *= 2.0
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return load_hf(str(path))


def run(engine, requests, batch_size: int) -> tuple[list, float]:
    start = time.perf_counter()
    out = engine.generate(requests, batch_size=batch_size)
    return out, time.perf_counter() - start


def measure(engine, questions, forcings, sampled: bool, batch_size: int) -> dict:
    requests = [
        make_request(
            engine.tokenizer,
            engine.format_tokens,
            engine.context_length,
            q,
            f,
            Sampling(temperature=1.0, seed=1000 + i) if sampled else Sampling(),
        )
        for i, q in enumerate(questions)
        for f in forcings
    ]
    separate, t_separate = run(engine, requests, batch_size)
    shared, t_shared = run(engine, share(requests), batch_size)
    same = all(
        {k: v for k, v in a.to_dict().items() if k not in HOW} == {k: v for k, v in b.to_dict().items() if k not in HOW}
        for a, b in zip(separate, shared)
    )
    gen_sep = sum(len(c.output_token_ids) for c in separate)
    gen_sh = sum(len(c.output_token_ids) - c.shared_tokens for c in shared)
    pre_sep = sum(c.prompt_tokens_processed for c in separate)
    pre_sh = sum(c.prompt_tokens_processed for c in shared)
    return dict(
        gen_separate=gen_sep,
        gen_shared=gen_sh,
        prefill_separate=pre_sep,
        prefill_shared=pre_sh,
        s_separate=t_separate,
        s_shared=t_shared,
        identical=same,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--caps", default="64,128,256,512")
    parser.add_argument("--waits", default="0,1,2,4")
    parser.add_argument("--wait-cap", type=int, default=512)
    parser.add_argument("--answer-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--modes", default="greedy,sampled")
    parser.add_argument("--sweeps", default="caps,waits", help="caps, waits or both")
    args = parser.parse_args()

    questions = [json.loads(line)["problem"] for line in DATA.read_text().splitlines()[: args.problems]]
    caps = [int(c) for c in args.caps.split(",")]
    waits = [int(k) for k in args.waits.split(",")]
    sweeps = {
        f"caps {args.caps} (Wait 0)": [
            BudgetForcing(max_thinking_tokens=c, max_answer_tokens=args.answer_tokens) for c in caps
        ],
        f"Waits {args.waits} (cap {args.wait_cap})": [
            BudgetForcing(max_thinking_tokens=args.wait_cap, num_ignore=k, max_answer_tokens=args.answer_tokens)
            for k in waits
        ],
    }
    chosen = args.sweeps.split(",")
    sweeps = {name: f for (kind, (name, f)) in zip(["caps", "waits"], sweeps.items()) if kind in chosen}
    print(
        "| model | sweep | decoding | generated separate | generated shared | ratio | prompt tokens separate | "
        "prompt tokens shared | wall s separate | wall s shared | ratio | identical |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    embedded = load_hf("smollm2")
    for name in args.models.split(","):
        if name == "tiny":
            model, tokenizer = tiny_model(embedded[1], Path(tempfile.mkdtemp()) / "tiny")
        else:
            model, tokenizer = embedded
        engine = HFEngine(model, tokenizer)
        for sweep, forcings in sweeps.items():
            for mode in args.modes.split(","):
                r = measure(engine, questions, forcings, mode == "sampled", args.batch_size)
                print(
                    f"| {name} | {sweep} | {mode} | {r['gen_separate']} | {r['gen_shared']} | "
                    f"{r['gen_shared'] / r['gen_separate']:.2f} | {r['prefill_separate']} | {r['prefill_shared']} | "
                    f"{r['s_separate']:.1f} | {r['s_shared']:.1f} | {r['s_shared'] / r['s_separate']:.2f} | "
                    f"{'yes' if r['identical'] else 'NO'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
