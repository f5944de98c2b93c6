"""The machine's own limits for decoding a model: what no engine can beat, to read engines' speeds against.

Decoding one sequence reads every weight once per token, so batch-1 speed is bounded by memory
bandwidth / weight bytes (the roofline at batch 1). A batch of B sequences reads the weights once for B
tokens, so at large batches the bound becomes arithmetic: peak matmul FLOP/s / (2 x parameters) tokens/s.
This script measures both limits on this machine (a large copy for bandwidth, a large float32 matmul for
FLOP/s, with torch's threads) and prints them for the embedded model in float32 (transformers engines) and
for its GGUF file (llama.cpp reads the quantized weights); pass `--measured NAME=TOKENS_PER_S` to print an
engine's measured speed as a share of its limit (a name with batchN is read against N times the batch-1
bound, capped by the matmul peak).

    python bench/roofline.py [--model smollm2] [--measured hf-batch1=28.1 --measured llamacpp-batch1=75]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from forcing import machine, timed  # noqa: E402  (bench/forcing.py, beside this script)
from s1.core.models import load_hf, resolve  # noqa: E402


def best_of(n: int, fn) -> float:
    """The shortest of n timed calls (after one warm-up): the limit, not the noise."""
    fn()
    return timed(fn, n)[0]


def bandwidth(gib: float = 1.0) -> float:
    """Bytes per second moved by a large tensor copy (each byte read once and written once)."""
    n = int(gib * 2**30 / 4)
    src, dst = torch.ones(n), torch.empty(n)
    seconds = best_of(5, lambda: dst.copy_(src))
    return 2 * n * 4 / seconds


def matmul_flops(size: int = 2048) -> float:
    """Float32 FLOP/s of a square matmul, large enough to run at the machine's peak."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds = best_of(5, lambda: torch.mm(a, b))
    return 2 * size**3 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument(
        "--measured",
        action="append",
        default=[],
        metavar="NAME=TOKENS_PER_S",
        help="An engine's measured tokens/s (names starting with llamacpp are read against the GGUF limit).",
    )
    args = parser.parse_args()

    model, _ = load_hf(args.model, device="cpu", dtype="float32")
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    source = resolve(args.model)
    gguf_bytes = Path(source.location).stat().st_size if source.kind == "gguf" else None
    del model

    bytes_per_s, flops = bandwidth(), matmul_flops()
    print(f"machine: {machine()}")
    print(
        f"model: {args.model}, {params / 1e6:.1f}M parameters, {weight_bytes / 2**20:.0f} MiB in float32"
        + (f", GGUF file {gguf_bytes / 2**20:.0f} MiB" if gguf_bytes else "")
    )
    print()
    print("| limit | measured | tokens/s it allows |")
    print("|---|---|---|")
    batch1 = bytes_per_s / weight_bytes
    print(f"| memory bandwidth (copy) | {bytes_per_s / 1e9:.1f} GB/s | batch 1, float32 weights: {batch1:.0f} |")
    if gguf_bytes:
        print(
            f"| memory bandwidth (copy) | {bytes_per_s / 1e9:.1f} GB/s "
            f"| batch 1, GGUF weights: {bytes_per_s / gguf_bytes:.0f} |"
        )
    batched = flops / (2 * params)
    print(
        f"| float32 matmul ({torch.get_num_threads()} threads) | {flops / 1e9:.1f} GFLOP/s "
        f"| large batches: {batched:.0f} |"
    )
    if args.measured:
        print()
        print("| engine | tokens/s | limit it is read against | share of the limit |")
        print("|---|---|---|---|")
        for item in args.measured:
            name, _, value = item.partition("=")
            speed = float(value)
            found = re.search(r"batch(\d+)", name)
            batch = int(found.group(1)) if found else None
            gguf = name.startswith("llamacpp") and gguf_bytes
            # B sequences read the weights once for B tokens: B times the batch-1 bound, until the matmul
            # peak caps it (float32 only: no int8 peak is measured, so GGUF rows use the bandwidth bound)
            per_read = bytes_per_s / gguf_bytes if gguf else batch1
            if batch is None:
                limit, which = batched, "matmul peak"
            elif gguf:
                limit, which = batch * per_read, f"GGUF bandwidth x {batch}"
            else:
                limit = min(batch * per_read, batched)
                which = f"float32 bandwidth x {batch}" if limit < batched else "matmul peak"
            print(f"| {name} | {speed:.1f} | {which}: {limit:.0f} | {100 * speed / limit:.0f}% |")


if __name__ == "__main__":
    main()
