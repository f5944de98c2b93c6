"""`s1 demo`: the whole s1 loop on a CPU in minutes, on a task a tiny model can learn.

1. pool: digit-walk problems made by code (`task.py`), with duplicates, a few broken items and a few
   of the evaluation problems planted in it; the held-out evaluation set beside it;
2. curate: `s1 curate` on that pool (python roles: the programmatic teacher, a solver that does not
   think, a classifier by task type), through its real stages, store and call cache;
3. train: `s1 train` of a tiny character-level Llama from scratch on the selection;
4. eval: `s1 eval` over thinking caps, over Wait counts, and majority voting over sampled answers;
5. report: `report.html` (`s1 report --html` on the three runs), `report.md` and `scaling.png` (`s1 report`),
   and the tables on the terminal.

Every stage writes into one directory and picks up what an earlier run finished: curation from its
store, training from its checkpoints (or skips it when the model is there), evaluation from its samples.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from s1.core.errors import UserError
from s1.core.files import write_atomic
from s1.core.rundir import LOCK, MARKER, claim_directory, make_directory, unlock_directory
from s1.demo import task, tiny


@dataclass(frozen=True)
class Plan:
    """Sizes of one demo run; `quick` is for tests (a minute or two), the default for the README."""

    pool: int = 3000
    held_out: int = 400
    planted: int = 10
    select: int = 1000
    epochs: float = 20.0
    max_steps: int = -1
    lr: float = 3e-3
    batch_size: int = 16
    caps: tuple[int, ...] = (16, 48, 80, 112, 144, 176)
    wait_cap: int = 240
    num_ignore: tuple[int, ...] = (0, 1, 2)
    vote_cap: int = 80
    vote_samples: int = 8
    vote_temperature: float = 0.8
    eval_batch: int = 100
    seed: int = 0


QUICK = Plan(
    pool=400,
    held_out=24,
    planted=4,
    select=120,
    epochs=1.0,
    max_steps=12,
    batch_size=32,
    caps=(16, 112),
    wait_cap=160,
    num_ignore=(0, 1),
    vote_cap=48,
    vote_samples=3,
)


def _as_json(plan: Plan) -> dict:
    """The plan as plan.json holds it (tuples become lists), so a read file compares equal."""
    return json.loads(json.dumps(asdict(plan)))


def check_plan(out: Path, plan: Plan, write: bool = True) -> None:
    """A directory resumes only the demo run it holds: a model trained for one size must not be reused for
    another, and a folder that holds something else is not written into (`write`: start plan.json in an
    empty one)."""
    path, wanted = out / "plan.json", _as_json(plan)
    if not path.exists():
        if any(p.name not in (LOCK, MARKER) for p in out.iterdir()):
            raise UserError(f"--out {out} is not empty and holds no demo run; choose an empty or new directory.")
        if write:
            write_atomic(path, json.dumps(wanted, indent=1) + "\n")
        return
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise UserError(
            f"{path} cannot be read; delete {out} to start the demo afresh, or choose another --out."
        ) from None
    if found != wanted:
        kind = "a --quick" if found == _as_json(QUICK) else "another"
        raise UserError(f"{out} holds {kind} demo run; resume it with the same options, or choose another --out.")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def prepare_data(out: Path, plan: Plan) -> Path:
    """The pool, the held-out problems, the domain list and the curation config; returns the config's path."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    held = task.held_out(plan.held_out, seed=plan.seed + 1)
    write_jsonl(
        data / "heldout.jsonl",
        [
            {"id": f"eval-{i}", "question": p.question, "answer": str(p.answer), "domain": p.domain, "steps": p.steps}
            for i, p in enumerate(held)
        ],
    )
    write_jsonl(data / "pool.jsonl", task.pool(plan.pool, seed=plan.seed, planted_eval=held[: plan.planted]))
    write_atomic(
        data / "domains.json", json.dumps({code: title for code, (title, _, _) in task.RULES.items()}, indent=1)
    )
    role = lambda name: {"engine": "python", "model": f"s1.demo.task:{name}"}  # noqa: E731
    config = {
        "output": str((out / "curate").resolve()),
        "sources": [{"name": "walks", "path": "pool.jsonl", "cot_type": "math"}],
        "eval_sets": ["heldout.jsonl"],
        "domains": "domains.json",
        "student": str((out / "student-init").resolve()),
        "roles": {
            "teacher": role("teacher"),
            "solvers": [role("solver")],
            "judge": role("solver"),
            "classifier": role("classifier"),
        },
        "selection": {"n": plan.select, "strategy": "s1", "seed": plan.seed},
    }
    path = data / "curate.yaml"
    write_atomic(
        path,
        "# Written by s1 demo; run it again with: s1 curate run "
        + str(path)
        + "\n"
        + yaml.safe_dump(config, sort_keys=False),
    )
    return path


def curate(config_path: Path, say: Callable[[str], None]) -> Path:
    from s1.curate import load_config, run

    config = load_config(config_path, None)
    run(config, say=say)
    return Path(config.output) / "s1k.jsonl"


def train(out: Path, data: Path, plan: Plan) -> Path:
    from s1.train.recipe import resolve
    from s1.train.trainer import newest_checkpoint
    from s1.train.trainer import train as sft

    final = out / "student" / "final"
    if (final / "s1_train.json").exists():
        return final
    resume = (out / "student").is_dir() and newest_checkpoint(out / "student") is not None
    config = resolve(
        {
            "model": str(out / "student-init"),
            "data": str(data),
            "output": str(out / "student"),
            "batch_size": plan.batch_size,
            "resume": resume,
            "num_train_epochs": plan.epochs,
            "max_steps": plan.max_steps,
            "learning_rate": plan.lr,
            "per_device_train_batch_size": plan.batch_size,
            "max_length": tiny.CONTEXT,
            "warmup_steps": 0.05,
            "weight_decay": 0.0,
            "save_steps": 100,
            "logging_steps": 50,
            "seed": plan.seed,
        }
    )
    return sft(config)


def evaluate(out: Path, model: Path, plan: Plan) -> list[Path]:
    """Three runs: thinking caps, Wait counts at a generous cap, majority voting over sampled answers."""
    from s1.engines import load_engine
    from s1.evaluate.config import EvalConfig
    from s1.evaluate.runner import run_eval
    from s1.report.run_report import write_run_report

    engine = load_engine(str(model), "hf", "s1", device="cpu")
    base = EvalConfig(
        model=str(model),
        engine="hf",
        data=str(out / "data" / "heldout.jsonl"),
        benchmarks=[],
        max_answer_tokens=16,
        batch_size=plan.eval_batch,
        seed=plan.seed,
    )
    runs = [
        (out / "eval-caps", replace(base, max_thinking_tokens=list(plan.caps), num_ignore=[0])),
        (out / "eval-wait", replace(base, max_thinking_tokens=[plan.wait_cap], num_ignore=list(plan.num_ignore))),
        (
            out / "eval-vote",
            replace(
                base, max_thinking_tokens=[plan.vote_cap], samples=plan.vote_samples, temperature=plan.vote_temperature
            ),
        ),
    ]
    for directory, config in runs:
        write_run_report(directory, run_eval(config, str(directory), engine=engine))
    return [directory for directory, _ in runs]


INTRO = """<p>This page was written by <code>s1 demo</code>: a tiny character-level model, trained from scratch on a
CPU on {selected} problems that <code>s1 curate</code> chose from a pool of {pool}, answers {held} held-out
<em>digit walks</em> (“{example}”). A walk takes one line of thinking per step, so a thinking cap that stops the
model early leaves it guessing. The runs: <b>eval-caps</b> sweeps the cap, <b>eval-wait</b> suppresses the end of
thinking {waits} times at cap {wait_cap}, <b>eval-vote</b> samples {votes} answers per problem at cap {vote_cap} and
votes (maj@k).</p>"""


def demo(out: str | Path = "runs/demo", quick: bool = False, say: Callable[[str], None] = print) -> dict:
    """Run (or resume) the demo into `out`; returns where its products are and how long each stage took."""
    plan = QUICK if quick else Plan()
    # the model path is part of eval's context: one spelling per directory
    out = make_directory(Path(out).expanduser().resolve(), "--out", "the demo")
    check_plan(out, plan, write=False)  # before the lock, which would leave its files in a directory refused here
    lock = claim_directory(out, "demo", "--out")  # one demo at a time: two would build one model directory at once
    try:
        check_plan(out, plan)
        return _run(out, plan, say)
    finally:
        unlock_directory(lock)


def _run(out: Path, plan: Plan, say: Callable[[str], None]) -> dict:
    """The five stages, under the directory's lock."""
    from s1.report.compare import compare, load_summary
    from s1.report.html import write_html

    times: dict[str, float] = {}
    stages = ("pool", "curate", "train", "eval", "report")

    def stage(number: int, text: str) -> float:
        say(f"[{number}/{len(stages)}] {text}")
        return time.perf_counter()

    start = stage(1, f"pool: {plan.pool} digit walks made by code, {plan.held_out} held out for evaluation")
    config_path = prepare_data(out, plan)
    tiny.build(out / "student-init", seed=plan.seed)
    times["pool"] = time.perf_counter() - start

    start = stage(2, "curate: s1 curate (quality, decontamination, difficulty, diversity, selection)")
    selection = curate(config_path, say)
    times["curate"] = time.perf_counter() - start

    start = stage(3, f"train: s1 train, a {tiny.describe()} from scratch on the selection")
    model = train(out, selection, plan)
    times["train"] = time.perf_counter() - start

    start = stage(4, "eval: s1 eval over thinking caps, Wait counts and majority voting")
    runs = evaluate(out, model, plan)
    times["eval"] = time.perf_counter() - start

    start = stage(5, "report")
    selected = sum(1 for _ in selection.open(encoding="utf-8"))
    intro = INTRO.format(
        selected=selected,
        pool=plan.pool,
        held=plan.held_out,
        votes=plan.vote_samples,
        vote_cap=plan.vote_cap,
        example=task.Problem("double", 4, 7, 6).question,
        wait_cap=plan.wait_cap,
        waits=", ".join(map(str, plan.num_ignore)),
    )
    html = write_html(
        [str(r) for r in runs], out / "report.html", title="s1 demo: test-time scaling on digit walks", intro=intro
    )
    write_atomic(out / "report.md", compare([str(r) for r in runs], out / "scaling.png"))
    times["report"] = time.perf_counter() - start
    write_atomic(out / "timings.json", json.dumps({k: round(v, 1) for k, v in times.items()}, indent=1) + "\n")
    return {
        "runs": runs,
        "html": html,
        "model": model,
        "selection": selection,
        "times": times,
        "summaries": [load_summary(str(r)) for r in runs],
    }
