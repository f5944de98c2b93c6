"""What abusive clients cost the others on one `s1 serve`: 8 normal chat requests alone, then the same 8 while a
large body, a slow body, a 4,096-sequence request, 7 MB of text to template and a lone surrogate arrive. Prints each
round's latencies of the normal requests, the slowest `/health` answer meanwhile and the server's memory before and
after (the timing side of tests/serve/test_limits.py's abuse test, which asserts behaviour only).

    python bench/abuse.py [--model smollm2] [--batch-size 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx

NORMAL = {"messages": [{"role": "user", "content": "What is 2+2?"}], "max_thinking_tokens": 32, "max_tokens": 48}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def large(base: str, port: int) -> int:
    body = b'{"messages": [{"role": "user", "content": "' + b"x" * (50 << 20) + b'"}]}'
    return httpx.post(f"{base}/v1/chat/completions", content=body, timeout=600).status_code


def slow(base: str, port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=600) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
        return int(s.recv(100).split(b" ", 2)[1])


def many(base: str, port: int) -> int:
    body = {"prompt": [f"p{i}" for i in range(256)], "n": 16, "max_tokens": 2}
    return httpx.post(f"{base}/v1/completions", json=body, timeout=600).status_code


def heavy(base: str, port: int) -> int:
    body = {"messages": [{"role": "user", "content": "hello world " * 600_000}]}
    return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=600).status_code


def surrogate(base: str, port: int) -> int:
    body = '{"messages": [{"role": "user", "content": "\\ud800"}]}'
    headers = {"content-type": "application/json"}
    return httpx.post(f"{base}/v1/chat/completions", content=body, headers=headers, timeout=600).status_code


ABUSE = {
    "large 50 MB": large,
    "slow body": slow,
    "4096 sequences": many,
    "7 MB to template": heavy,
    "surrogate": surrogate,
}


def _abuse(job: tuple[str, str, int]) -> tuple[str, int]:
    name, base, port = job
    return name, ABUSE[name](base, port)


def round_of(base: str, port: int, abused: bool) -> tuple[list[float], float, dict]:
    latencies: list[float] = []
    health: list[float] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            began = time.perf_counter()
            httpx.get(f"{base}/health", timeout=600)
            health.append(time.perf_counter() - began)
            time.sleep(0.05)

    def normal():
        began = time.perf_counter()
        r = httpx.post(f"{base}/v1/chat/completions", json=NORMAL, timeout=600)
        r.raise_for_status()
        latencies.append(time.perf_counter() - began)

    poller = threading.Thread(target=poll)
    poller.start()
    # the abusers are other processes, as they would be: their bytes and JSON do not take this one's GIL
    pool = multiprocessing.Pool(len(ABUSE)) if abused else None
    pending = pool.map_async(_abuse, [(name, base, port) for name in ABUSE]) if pool else None
    workers = [threading.Thread(target=normal) for _ in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    got = dict(pending.get()) if pending else {}
    if pool:
        pool.close()
        pool.join()
    stop.set()
    poller.join()
    return latencies, max(health), got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batch-size", default="8")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "s1", "serve", "--model", args.model, "--port", str(port), "--batch-size",
         args.batch_size, "--max-request-body-bytes", str(64 << 20), "--request-read-timeout", "5"],
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        round_of(base, port, False)  # warm
        start = rss(proc.pid)
        print(f"server RSS after warm-up: {start:.0f} MB")
        for r in range(args.rounds):
            for abused in (False, True):
                lat, slowest_health, got = round_of(base, port, abused)
                print(
                    f"round {r} {'abused' if abused else 'alone '}: normal latency median "
                    f"{statistics.median(lat):.2f} s "
                    f"max {max(lat):.2f} s; slowest /health {slowest_health:.3f} s; RSS {rss(proc.pid):.0f} MB"
                    + (f"; abuse got {got}" if got else "")
                )
        print(f"server RSS at the end: {rss(proc.pid):.0f} MB ({rss(proc.pid) / start - 1:+.0%} from warm-up)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
