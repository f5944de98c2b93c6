"""Training speed on a shared machine: torch's default thread count against the one `s1 train` chooses.

With another process busy on one of two cores, the demo's training ran 15x slower (3.3 -> 0.21 it/s):
torch's threads wait for each other at every operator, and one of them keeps losing its core. `s1 train`
now chooses its threads from the cores other processes leave free (src/s1/engines/threads.py). This
trains the demo's tiny character-level Llama for a few steps through `s1 train`, with and without
`--busy` spinning processes, once with OMP_NUM_THREADS set to every usable core (what torch does by
default, i.e. before) and once with s1's choice (after), and prints the steps per second of each.

    python bench/threads.py [--steps 30] [--busy 1] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from forcing import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def data(path: Path, n: int = 256) -> Path:
    """s1K-style records of the demo's digit walks, traces from its programmatic teacher."""
    from s1.demo import task

    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(n):
            p = task.random_problem(rng)
            record = {"question": p.question, "thinking": p.trace(rng), "answer": str(p.answer)}
            f.write(json.dumps(record) + "\n")
    return path


def spin(cpu: int | None) -> subprocess.Popen:
    pin = f"import os; os.sched_setaffinity(0, {{{cpu}}})\n" if cpu is not None else ""
    return subprocess.Popen([sys.executable, "-c", pin + "while True: pass"])


def train(model: Path, records: Path, out: Path, steps: int, threads: int | None) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "s1", "train", "--model", str(model), "--data", str(records)]
    command += ["--output", str(out), "--max-steps", str(steps), "--batch-size", "16", "--micro-batch-size", "16"]
    command += ["--lr", "3e-3", "--block-size", "384", "--save-steps", str(10 * steps), "--logging-steps", "10"]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    record = json.loads((out / "ranks" / "rank-0.json").read_text())
    return {"it/s": steps / record["train_seconds"], "threads": record["threads"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--busy", type=int, default=1, help="spinning processes competing with training")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    from s1.demo import tiny
    from s1.engines.threads import usable_cores

    cores = usable_cores()
    cpus = sorted(os.sched_getaffinity(0))
    print(f"machine: {machine()}; usable cores {cores}; load average {os.getloadavg()[0]:.2f} at start")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tiny.build(tmp / "student-init")
        records = data(tmp / "walks.jsonl")
        for busy in (0, args.busy):
            for label, threads in ((f"torch default ({cores} threads)", cores), ("s1's choice", None)):
                for r in range(args.repeat):
                    spinners = [spin(cpus[-1 - i % len(cpus)]) for i in range(busy)]
                    try:
                        time.sleep(1.0)  # let the spinners take their cores before training measures
                        result = train(model, records, tmp / f"run-{busy}-{threads}-{r}", args.steps, threads)
                    finally:
                        for s in spinners:
                            s.kill()
                            s.wait()
                    rows.append((busy, label, result))
                    print(f"  busy={busy} {label}: {result['it/s']:.2f} it/s, threads {result['threads']}", flush=True)
    print()
    print("| busy processes | threads | steps/s | threads chosen (step, n) |")
    print("|---|---|---|---|")
    for busy, label, result in rows:
        print(f"| {busy} | {label} | {result['it/s']:.2f} | {result['threads']} |")


if __name__ == "__main__":
    main()
