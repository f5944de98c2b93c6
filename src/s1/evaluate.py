"""Sweeps: run every (benchmark, method, setting, problem, sample), grade, record, resume, summarize.

Data flows one way: benchmark -> prompts -> engine with forcing -> completions -> grading -> metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import asdict, dataclass, field

from .benchmarks import Problem, load_benchmark
from .engines import Engine, Sampling, load_engine, make_request
from .errors import UserError
from .forcing import BudgetForcing
from .grading import Grader, normalize_answer
from .methods import Setting, build_settings
from .metrics import accuracy, bootstrap_ci, control, majority_vote, pass_at_k, performance, scaling
from .rundir import RunDir, record_key

# Config fields that change what a sample is: a run resumes only when these match.
IDENTITY = ("model", "engine", "format", "temperature", "top_p", "seed", "max_answer_tokens", "answer_prefix",
            "extensions", "min_thinking_tokens", "system", "tokens_per_step", "max_tries", "data", "data_dir")


@dataclass
class EvalConfig:
    benchmarks: list[str] = field(default_factory=lambda: ["aime24"])
    model: str = "smollm2"
    engine: str = "hf"
    format: str = "s1"
    methods: list[str] = field(default_factory=lambda: ["budget_forcing"])
    max_thinking_tokens: list[int | None] = field(default_factory=lambda: [None])
    num_ignore: list[int] = field(default_factory=lambda: [0])
    min_thinking_tokens: int = 0
    extensions: list[str] = field(default_factory=lambda: ["Wait"])
    answer_prefix: str = "Final Answer:"
    max_answer_tokens: int = 1024
    steps: list[int] | None = None
    tokens_per_step: int = 100
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    max_tries: int = 16
    batch_size: int = 8
    system: str | None = None
    data: str | None = None
    data_dir: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    answer_kind: str | None = None
    limit: int | None = None
    ids: list[str] | None = None
    base_urls: list[str] | None = None

    def forcing(self) -> BudgetForcing:
        return BudgetForcing(
            max_thinking_tokens=None, min_thinking_tokens=self.min_thinking_tokens, extensions=tuple(self.extensions),
            answer_prefix=self.answer_prefix, max_answer_tokens=self.max_answer_tokens,
        )

    def settings(self) -> list[Setting]:
        if self.samples < 1:
            raise UserError(f"--samples must be at least 1, got {self.samples}.")
        if self.samples > 1 and self.temperature == 0 and any(m != "rejection_sampling" for m in self.methods):
            raise UserError("--samples above 1 needs --temperature above 0; greedy samples would all be the same.")
        if self.max_tries < 1:
            raise UserError(f"--max-tries must be at least 1, got {self.max_tries}.")
        for cap in self.max_thinking_tokens:
            BudgetForcing(max_thinking_tokens=cap, min_thinking_tokens=self.min_thinking_tokens)
        for k in self.num_ignore:
            BudgetForcing(num_ignore=k)
        return build_settings(self.methods, self.forcing(), self.max_thinking_tokens, self.num_ignore, self.steps, self.tokens_per_step)

    def benchmark_names(self) -> list[str]:
        return [Path(self.data).stem] if self.data else list(self.benchmarks)

    def problems(self, name: str) -> list[Problem]:
        if self.data:
            return load_benchmark(data=self.data, question_field=self.question_field, answer_field=self.answer_field,
                                  answer_kind=self.answer_kind, limit=self.limit, ids=self.ids)
        return load_benchmark(name, data_dir=self.data_dir, answer_kind=self.answer_kind, limit=self.limit, ids=self.ids)


@dataclass
class _Item:
    benchmark: str
    index: int
    problem: Problem
    setting: Setting
    sample: int
    tries: int = 0

    def key(self) -> tuple:
        return (self.benchmark, str(self.problem.id), self.setting.method, self.setting.label, self.sample)


class _Tally:
    """Live numbers for the progress bar."""

    def __init__(self):
        self.correct = self.graded = self.tokens = 0
        self.start = time.perf_counter()

    def add(self, record: dict) -> None:
        self.graded += 1
        self.correct += bool(record["correct"])
        self.tokens += record["thinking_tokens"] + record["answer_tokens"]

    def text(self) -> str:
        acc = 100.0 * self.correct / self.graded if self.graded else 0.0
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        return f"acc {acc:5.1f}% | {rate:6.1f} tok/s"


def _sampling(config: EvalConfig, item: _Item, temperature: float) -> Sampling:
    seed = None
    if config.seed is not None:
        seed = config.seed + 1_000_003 * item.sample + 7_919 * item.index + 104_729 * item.tries
    return Sampling(temperature=temperature, top_p=config.top_p, seed=seed)


def run_eval(config: EvalConfig, output: str, engine: Engine | None = None, show_progress: bool = True) -> dict:
    """Run (or resume) a sweep into `output`; returns the summary written there."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    settings = config.settings()
    run = RunDir(output)
    run.check_config(asdict(config), IDENTITY)
    benchmarks = {name: config.problems(name) for name in config.benchmark_names()}
    done = run.records()
    items = [
        _Item(name, i, p, s, k)
        for name, problems in benchmarks.items()
        for s in settings
        for i, p in enumerate(problems)
        for k in range(config.samples)
    ]
    todo = [it for it in items if it.key() not in done]
    if todo:
        engine = engine or load_engine(config.model, config.engine, config.format, base_urls=config.base_urls)
        tally = _Tally()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"), TimeRemainingColumn())
        with Grader() as grader, Progress(*columns, disable=not show_progress, transient=False) as progress:
            task = progress.add_task("eval", total=len(items), completed=len(items) - len(todo), stats="")

            def finished(record: dict) -> None:
                run.append(record)
                tally.add(record)
                progress.update(task, advance=1, stats=tally.text())

            for setting in settings:
                batch = [it for it in todo if it.setting == setting]
                if batch:
                    progress.update(task, description=f"{setting.method} {setting.label}")
                    _run_setting(config, engine, grader, batch, finished)
    records = run.records()
    summary = summarize(config, settings, benchmarks, records)
    write_summary(run, config, summary)
    return summary


def _run_setting(config: EvalConfig, engine: Engine, grader: Grader, items: list[_Item], finished) -> None:
    """Generate, grade and record one setting's items; rejection sampling redraws what does not fit."""
    setting = items[0].setting
    # rejection sampling needs randomness: at greedy settings it samples at temperature 1
    temperature = (config.temperature or 1.0) if setting.reject_over is not None else config.temperature
    pending = items
    while pending:
        requests = [
            make_request(engine.tokenizer, engine.format_tokens, engine.context_length, setting.prompt(it.problem.question),
                         setting.forcing, _sampling(config, it, temperature), config.system)
            for it in pending
        ]
        start = time.perf_counter()
        retry: list[_Item] = []

        def on_completion(i: int, completion) -> None:
            item = pending[i]
            item.tries += 1
            fits = setting.reject_over is None or completion.thinking_tokens <= setting.reject_over
            if not fits and item.tries < config.max_tries:
                retry.append(item)
                return
            grade = grader.grade(item.problem.kind, item.problem.answer, completion.answer)
            finished({
                "benchmark": item.benchmark, "id": item.problem.id, "method": setting.method, "setting": setting.label,
                "sample": item.sample, "prompt": completion.prompt,
                "output": engine.tokenizer.decode(completion.output_token_ids, skip_special_tokens=False),
                "thinking_tokens": completion.thinking_tokens, "answer_tokens": completion.answer_tokens,
                "extensions_used": completion.extensions_used, "capped": completion.capped,
                "finish_reason": completion.finish_reason, "gold": item.problem.answer,
                "extracted": grade.extracted, "correct": grade.correct, "reason": grade.reason,
                "tries": item.tries, "fits": fits, "seconds": round(time.perf_counter() - start, 3),
            })

        engine.generate(requests, batch_size=config.batch_size, on_completion=on_completion)
        pending = retry


def _normalized(answer: str | None) -> str | None:
    return normalize_answer(answer) if answer else None


def summarize(config: EvalConfig, settings: list[Setting], benchmarks: dict[str, list[Problem]], records: dict) -> dict:
    """Per benchmark: one row per setting, then Control / Scaling / Performance per method."""
    out = {}
    for name, problems in benchmarks.items():
        rows = []
        for s in settings:
            per_problem = []
            for p in problems:
                samples = [records.get((name, str(p.id), s.method, s.label, k)) for k in range(config.samples)]
                if all(samples):
                    per_problem.append(samples)
            if not per_problem:
                continue
            flat = [r for samples in per_problem for r in samples]
            correct = [bool(r["correct"]) for r in flat]
            lo, hi = bootstrap_ci(correct)
            row = {
                "method": s.method, "setting": s.label, "problems": len(per_problem), "samples": len(flat),
                "accuracy": accuracy(correct), "ci_low": lo, "ci_high": hi,
                "mean_thinking_tokens": sum(r["thinking_tokens"] for r in flat) / len(flat),
                "in_control": None if s.bounds is None else all(s.in_bounds(r["thinking_tokens"]) for r in flat),
            }
            if config.samples > 1:
                row["maj@k"], row["pass@k"] = {}, {}
                for k in range(1, config.samples + 1):
                    votes = [majority_vote([_normalized(r["extracted"]) for r in samples[:k]]) for samples in per_problem]
                    row["maj@k"][k] = accuracy([v is not None and bool(samples[v]["correct"]) for v, samples in zip(votes, per_problem)])
                    row["pass@k"][k] = 100.0 * sum(
                        pass_at_k(len(samples), sum(bool(r["correct"]) for r in samples), k) for samples in per_problem
                    ) / len(per_problem)
            rows.append(row)
        methods = {}
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            points = [(r["mean_thinking_tokens"], r["accuracy"]) for r in mine]
            methods[method] = {
                "control": control([r["in_control"] for r in mine]),
                "scaling_per_1k_tokens": scaling(points, "1k"),
                "scaling_per_doubling": scaling(points, "doubling"),
                "performance": performance([r["accuracy"] for r in mine]),
            }
        out[name] = {"settings": rows, "methods": methods}
    return {"model": config.model, "benchmarks": out}


def _fmt(value, spec: str = ".1f", missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def summary_markdown(summary: dict, title: str | None = None) -> str:
    lines = [f"# {title or 's1 eval: ' + summary['model']}", ""]
    for name, bench in summary["benchmarks"].items():
        lines += [f"## {name}", "", "| method | setting | n | mean thinking tokens | accuracy % (95% CI) | in control |", "|---|---|---|---|---|---|"]
        for r in bench["settings"]:
            control_text = "–" if r["in_control"] is None else ("yes" if r["in_control"] else "no")
            lines.append(
                f"| {r['method']} | {r['setting']} | {r['samples']} | {r['mean_thinking_tokens']:.0f} | "
                f"{r['accuracy']:.1f} ({r['ci_low']:.1f}–{r['ci_high']:.1f}) | {control_text} |"
            )
        if any("maj@k" in r for r in bench["settings"]):
            ks = list(next(r for r in bench["settings"] if "maj@k" in r)["maj@k"])
            lines += ["", "| method | setting | " + " | ".join(f"maj@{k}" for k in ks) + " | " + " | ".join(f"pass@{k}" for k in ks) + " |",
                      "|---|---|" + "---|" * (2 * len(ks))]
            for r in bench["settings"]:
                if "maj@k" in r:
                    lines.append(f"| {r['method']} | {r['setting']} | " + " | ".join(f"{r['maj@k'][k]:.1f}" for k in ks) + " | "
                                 + " | ".join(f"{r['pass@k'][k]:.1f}" for k in ks) + " |")
        lines += ["", "| method | Control % | Scaling (points / 1k thinking tokens) | Scaling (points / doubling) | Performance % |", "|---|---|---|---|---|"]
        for method, m in bench["methods"].items():
            lines.append(
                f"| {method} | {_fmt(m['control'])} | {_fmt(m['scaling_per_1k_tokens'], '.2f')} | "
                f"{_fmt(m['scaling_per_doubling'], '.2f')} | {_fmt(m['performance'])} |"
            )
        lines.append("")
    lines.append("Scaling is the mean slope over all pairs of settings (s1 §3.2); the paper's Table 3 values read as points per doubling.")
    return "\n".join(lines) + "\n"


def write_summary(run: RunDir, config: EvalConfig, summary: dict) -> None:
    import json

    from .plots import scaling_plot

    run.write("summary.json", json.dumps(summary, indent=2) + "\n")
    run.write("summary.md", summary_markdown(summary))
    curves = [
        (f"{name}: {method}" if len(summary["benchmarks"]) > 1 else method,
         [(r["mean_thinking_tokens"], r["accuracy"], r["setting"]) for r in bench["settings"] if r["method"] == method])
        for name, bench in summary["benchmarks"].items()
        for method in bench["methods"]
    ]
    scaling_plot(curves, run.path / "scaling.png", title=f"{config.model}: {', '.join(summary['benchmarks'])}")


__all__ = ["EvalConfig", "run_eval", "summarize", "summary_markdown", "record_key"]
