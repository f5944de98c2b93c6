"""What sharing one trajectory per problem saves a budget sweep (docs/design.md, "Sweeps share one trajectory").

The same requests run twice through one engine, both ways in one `generate` call with the same batch size:
separately (every setting thinks from the prompt) and shared (`evaluate.sharing.share`: the largest setting
thinks, the others branch off it). Prints per engine, model, sweep and decoding: tokens the model generated,
prompt tokens processed, wall time, the shared/separate ratios, and whether every sample came out identical.

    python bench/sweep.py [--problems 16] [--models tiny,smollm2] [--engines hf,serve,llama-server]
                          [--caps 64,128,256,512] [--waits 0,1,2,4] [--wait-cap 512] [--batch-size 8]

Engines:
- `hf`: in process (forks copy the trunk's cache and random stream). Prompt tokens: what the engine
  computed (`Completion.prefill_tokens`).
- `serve`: `--engine remote` against `s1 serve --model M` (hf engine, continuous batching), started here on
  127.0.0.1; each round a request, a branch's rounds continuations of the shared output. Prompt tokens:
  the server's own counters from /metrics, `s1:prompt_tokens_total` (tokens received) and
  `s1:prefill_tokens_total` (of those, computed: a prefix a slot kept is not).
- `llama-server`: `--engine remote` against llama-cpp-python's server (`python -m llama_cpp.server`) on the
  embedded GGUF (so `smollm2` only), text mode. It has no counters: prompt tokens are its replies'
  `usage.prompt_tokens`, summed (the whole prompt of each request; its own prefix cache is not subtracted).
  Text mode re-tokenizes replies, so only settings with the trajectory's cap share (a Wait sweep); a cap
  sweep runs every setting alone (`RemoteBackend.shares_rounds`). Where samples differ, the separate run
  is made once more, to tell whether the server reproduces itself.

Sweeps: the caps at Wait 0 (a doubling cap sweep), and the Wait counts at --wait-cap. Models: `tiny`, a
2-layer random Llama on the embedded tokenizer whose end-of-thinking logits are scaled up (so it tries to
stop every few dozen tokens, as the Wait sweep needs; `s1.demo.tiny.random_llama`, the tests' tiny model);
`smollm2`, the embedded SmolLM2-135M.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from s1 import BudgetForcing
from s1.core.models import embedded_gguf, load_hf
from s1.core.sampling import Sampling
from s1.demo.tiny import random_llama
from s1.engines.base import make_request
from s1.engines.hf import HFEngine
from s1.engines.remote import RemoteEngine
from s1.evaluate.sharing import share

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500.jsonl"
HOW = {"prefill_tokens", "shared_tokens", "separate_prefill_tokens"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(command: list[str], ready: str):
    """Run a server process for the length of a with-block; yields its base URL once `ready` answers 200."""
    port = _port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", *command, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise RuntimeError(f"{command[0]} did not start: {log.read()[-2000:]}")
            try:
                if httpx.get(base + ready, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_counters(base: str) -> dict:
    """s1 serve's /metrics counters: prompt tokens received and computed."""
    text = httpx.get(base + "/metrics", timeout=30).text
    out = {}
    for name in ("prompt_tokens", "prefill_tokens"):
        found = re.search(rf"^s1:{name}_total (\S+)$", text, re.M)
        out[name] = float(found.group(1)) if found else 0.0
    return out


class Counted:
    """An engine, and how to read the prompt tokens it (or its server) processed over a run."""

    def __init__(self, engine, name: str, counters):
        self.engine, self.name, self.counters = engine, name, counters

    def run(self, requests, batch_size: int) -> tuple[list, float, dict]:
        before = self.counters(None)
        start = time.perf_counter()
        out = self.engine.generate(requests, batch_size=batch_size)
        seconds = time.perf_counter() - start
        after = self.counters(out)
        return out, seconds, {k: after[k] - before.get(k, 0) for k in after}


def measure(counted: Counted, questions, forcings, sampled: bool, batch_size: int) -> dict:
    engine = counted.engine
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
    separate, t_separate, c_separate = counted.run(requests, batch_size)
    shared, t_shared, c_shared = counted.run(share(requests), batch_size)

    def same(xs, ys) -> bool:
        return all(
            {k: v for k, v in a.to_dict().items() if k not in HOW}
            == {k: v for k, v in b.to_dict().items() if k not in HOW}
            for a, b in zip(xs, ys)
        )

    identical = "yes" if same(separate, shared) else "NO"
    if counted.name == "usage" and identical == "NO":  # does the server give the separate run's samples twice?
        again = counted.engine.generate(requests, batch_size=batch_size)
        identical += "" if same(separate, again) else " (nor does a 2nd separate run)"
    return dict(
        gen_separate=sum(len(c.output_token_ids) for c in separate),
        gen_shared=sum(c.generated_tokens for c in shared),
        gen_counterfactual=sum(len(c.output_token_ids) for c in shared),
        counters_separate=c_separate,
        counters_shared=c_shared,
        s_separate=t_separate,
        s_shared=t_shared,
        identical=identical,
        answers=sum(c.answer_tokens for c in shared),
    )


def engines(kinds: list[str], model: str, directory: Path, batch_size: int):
    """(label, Counted) per engine kind that runs this model, each with its server up while in use."""
    for kind in kinds:
        if kind == "hf":
            engine = HFEngine(*load_hf(str(directory)))
            yield (
                "hf",
                Counted(engine, "engine", lambda out: {"engine": sum(c.prompt_tokens_processed for c in out or [])}),
            )
        elif kind == "serve":
            command = ["s1", "serve", "--model", str(directory), "--host", "127.0.0.1", "--batch-size", str(batch_size)]
            with server(command, "/health") as base:
                engine = RemoteEngine.load(str(directory), [f"{base}/v1"], mode="ids")
                yield "remote → s1 serve", Counted(engine, "/metrics", lambda out, base=base: serve_counters(base))
        elif kind == "llama-server":
            if model != "smollm2":
                continue  # llama.cpp's server runs the embedded GGUF, not the random model
            command = ["llama_cpp.server", "--model", str(embedded_gguf()), "--host", "127.0.0.1"]
            command += ["--n_ctx", "4096", "--n_threads", "2", "--flash_attn", "true"]
            with server(command, "/v1/models") as base:
                engine = RemoteEngine.load("smollm2", [base])
                backend = engine.backend
                yield (
                    "remote → llama.cpp server",
                    Counted(engine, "usage", lambda out: {"usage": backend.usage_prompt_tokens}),
                )
        else:
            raise SystemExit(f"--engines takes hf, serve and llama-server, not {kind!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--engines", default="hf")
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
        "| engine | model | sweep | decoding | generated separate | generated shared | ratio | answer tokens | "
        "prompt tokens separate | prompt tokens shared | ratio | counted by | wall s separate | wall s shared | "
        "ratio | identical |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
    tokenizer = load_hf("smollm2")[1]
    for model in args.models.split(","):
        directory = Path("smollm2") if model == "smollm2" else None
        if directory is None:
            directory = random_llama(tokenizer, Path(tempfile.mkdtemp()) / "tiny", context=4096)
        for label, counted in engines(args.engines.split(","), model, directory, args.batch_size):
            for sweep, forcings in sweeps.items():
                for mode in args.modes.split(","):
                    r = measure(counted, questions, forcings, mode == "sampled", args.batch_size)
                    assert r["gen_counterfactual"] == r["gen_separate"] or r["identical"] != "yes"
                    seps, shs = r["counters_separate"], r["counters_shared"]
                    key = next(iter(seps))
                    sep, sh = seps[key], shs[key]
                    by = {
                        "engine": "engine (prefill_tokens)",
                        "prompt_tokens": "s1 serve /metrics prompt_tokens_total",
                        "usage": "server usage.prompt_tokens",
                    }[key]
                    if "prefill_tokens" in seps:  # what s1 serve computed of them, where a kept prefix saved some
                        computed = (seps["prefill_tokens"], shs["prefill_tokens"])
                        by += " (= prefill_tokens_total)" if computed == (sep, sh) else f" (computed: {computed})"
                    print(
                        f"| {label} | {model} | {sweep} | {mode} | {r['gen_separate']} | {r['gen_shared']} | "
                        f"{r['gen_shared'] / r['gen_separate']:.2f} | {r['answers']} | {sep:.0f} | {sh:.0f} | "
                        f"{sh / sep:.2f} | {by} | {r['s_separate']:.1f} | {r['s_shared']:.1f} | "
                        f"{r['s_shared'] / r['s_separate']:.2f} | {r['identical']} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
