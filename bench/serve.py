"""`s1 serve` throughput and latency at 1, 8 and 32 concurrent clients.

Starts a real server on 127.0.0.1, sends budget-forced chat requests (each client its own question),
and prints tokens/s (completion tokens, thinking included) and latency percentiles per concurrency.

    python bench/serve.py [--model smollm2] [--engine hf|llamacpp] [--concurrency 1 8 32] [--requests 32] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

sys.path.insert(0, os.path.dirname(__file__))
from forcing import machine  # noqa: E402  (same machine line as the forcing benchmark)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, engine: str, batch: int, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "s1",
            "serve",
            "--model",
            model,
            "--engine",
            engine,
            "--port",
            str(port),
            "--batch-size",
            str(batch),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def one(base: str, i: int, args) -> tuple[float, int]:
    body = {
        "messages": [{"role": "user", "content": f"Question {i}: what is {i} times {i + 3}?"}],
        "max_thinking_tokens": args.cap,
        "num_ignore": 1,
        "max_tokens": args.answer,
    }
    began = time.perf_counter()
    r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=900)
    r.raise_for_status()
    return time.perf_counter() - began, r.json()["usage"]["completion_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--engine", default="hf")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--requests", type=int, default=32, help="requests per concurrency level (at least the concurrency)"
    )
    parser.add_argument("--cap", type=int, default=48)
    parser.add_argument("--answer", type=int, default=16)
    parser.add_argument(
        "--ctx-size", type=int, default=None, help="llamacpp: KV cells of all sequences (default 2048 each)"
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    batch = max(args.concurrency)
    extra = ["--threads", str(args.threads)] if args.threads else []
    if args.engine == "llamacpp":
        extra += ["--ctx-size", str(args.ctx_size or 2048 * batch)]
    proc, base = start(args.model, args.engine, batch, extra)
    try:
        one(base, 0, args)  # warm-up
        print(f"machine: {machine()}")
        print(
            f"s1 serve --model {args.model} --engine {args.engine}; chat requests with max_thinking_tokens {args.cap}, "
            f"num_ignore 1, max_tokens {args.answer}\n"
        )
        print("| clients | requests | seconds | completion tokens/s | requests/s | p50 latency s | p90 s | p99 s |")
        print("|---|---|---|---|---|---|---|---|")
        for c in args.concurrency:
            n = max(args.requests, c)
            began = time.perf_counter()
            with ThreadPoolExecutor(max_workers=c) as pool:
                results = list(pool.map(lambda i: one(base, i, args), range(n)))
            wall = time.perf_counter() - began
            latencies = sorted(r[0] for r in results)
            tokens = sum(r[1] for r in results)
            q = statistics.quantiles(latencies, n=100, method="inclusive")
            print(
                f"| {c} | {n} | {wall:.1f} | {tokens / wall:.1f} | {n / wall:.2f} "
                f"| {q[49]:.2f} | {q[89]:.2f} | {q[98]:.2f} |"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
