"""Sweeps: run every (benchmark, method, setting, problem, sample), grade, record, resume, summarize.

Data flows one way: benchmark -> prompts -> engine with forcing -> completions -> grading -> metrics.
Grading runs in a background thread (its math in a worker process) while the engine decodes on.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass

from s1.core.rundir import RunDir
from s1.core.sampling import Sampling, derive_seed
from s1.data.benchmarks import Problem
from s1.data.grading import GRADER_VERSION, Grader
from s1.engines import Engine, load_engine, make_request
from s1.evaluate.config import EvalConfig, context_hash, sample_identity
from s1.evaluate.methods import PARALLEL, SEARCH, Setting
from s1.evaluate.search_records import choose_answer
from s1.evaluate.summary import summarize
from s1.report.markdown import summary_markdown


@dataclass
class _Item:
    benchmark: str
    problem: Problem
    setting: Setting
    sample: int
    identity: str
    tries: int = 0
    recorded: bool = False
    """Generated along with another setting's item (parallel methods sharing their trajectories)."""


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
    seed = derive_seed(config.seed, item.sample, problem=item.problem.id, tries=item.tries)
    return Sampling(temperature=temperature, top_p=config.top_p, seed=seed)


class _Recorder:
    """Grades finished samples on a background thread and appends them, so decoding never waits on grading."""

    def __init__(self, run: RunDir, grader: Grader, on_recorded):
        self.run, self.grader, self.on_recorded = run, grader, on_recorded
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.dropping = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="s1-grading")
        self.thread.start()

    def put(self, record: dict, kind: str, gold: str, text: str) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((record, kind, gold, text))

    def _loop(self) -> None:
        while (job := self.queue.get()) is not None:
            if self.error is not None or self.dropping:
                continue
            record, kind, gold, text = job
            try:
                if "trajectories" in record:
                    choose_answer(record, self.grader)
                else:
                    grade = self.grader.grade(kind, gold, text)
                    record.update(
                        extracted=grade.extracted, correct=grade.correct, reason=grade.reason, grader=GRADER_VERSION
                    )
                self.run.append(record)
                self.on_recorded(record)
            except BaseException as exc:  # handed to the main thread at the next put or at close
                self.error = exc

    def close(self, drain: bool = True) -> None:
        """drain=False (an interrupted run): drop what is not graded yet; those samples are in flight."""
        self.dropping = not drain
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and drain:
            raise self.error


def run_eval(config: EvalConfig, output: str, engine: Engine | None = None, show_progress: bool = True) -> dict:
    """Run (or resume) a sweep into `output`; returns the summary written there."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    settings = config.settings()
    benchmarks = config.load_benchmarks()
    context = context_hash(config)
    with RunDir(output) as run, Grader() as grader:
        run.log_invocation(asdict(config))
        done = run.records()
        items, seen = [], set()
        for name, problems in benchmarks.items():
            for s in settings:
                for p in problems:
                    for k in range(1 if s.search else config.samples):
                        identity = sample_identity(context, s, p, k)
                        if identity not in seen:
                            seen.add(identity)
                            items.append(_Item(name, p, s, k, identity))
        todo = [it for it in items if it.identity not in done]
        if todo:
            reward = _load_reward(config, [it.setting for it in todo])
            engine = engine or load_engine(
                config.model,
                config.engine,
                config.format,
                base_urls=config.base_urls,
                remote_mode=config.remote_mode,
                parallel=config.batch_size,
            )
            tally = _Tally()
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
            )
            with Progress(*columns, disable=not show_progress, transient=False) as progress:
                task = progress.add_task("eval", total=len(items), completed=len(items) - len(todo), stats="")

                def recorded(record: dict) -> None:
                    tally.add(record)
                    progress.update(task, advance=1, stats=tally.text())

                recorder = _Recorder(run, grader, recorded)
                try:
                    for setting in settings:
                        batch = [it for it in todo if it.setting == setting and not it.recorded]
                        if batch:
                            progress.update(task, description=f"{setting.method} {setting.label}")
                            if setting.search:
                                _run_search(config, engine, recorder, context, batch, todo, reward)
                            else:
                                _run_setting(config, engine, recorder, context, batch)
                except BaseException:
                    recorder.close(drain=False)
                    raise
                recorder.close()
        records = _regrade(run, grader, run.records())
        summary = summarize(config, settings, benchmarks, records, grader, skipped_lines=run.skipped_lines)
        write_summary(run, config, summary)
    return summary


def _run_setting(config: EvalConfig, engine: Engine, recorder: _Recorder, context: str, items: list[_Item]) -> None:
    """Generate one setting's items and hand them to the recorder; rejection sampling redraws what does not fit."""
    setting = items[0].setting
    # rejection sampling needs randomness: at greedy settings it samples at temperature 1
    temperature = (config.temperature or 1.0) if setting.reject_over is not None else config.temperature
    pending = items
    while pending:
        samplings = [_sampling(config, it, temperature) for it in pending]
        requests = [
            make_request(
                engine.tokenizer,
                engine.format_tokens,
                engine.context_length,
                setting.prompt(it.problem.question),
                setting.forcing,
                sampling,
                config.system,
            )
            for it, sampling in zip(pending, samplings)
        ]
        start = time.perf_counter()
        retry: list[_Item] = []

        def on_completion(i: int, completion) -> None:
            item = pending[i]
            item.tries += 1
            fits = setting.reject_over is None or completion.thinking_tokens <= setting.reject_over
            if not fits and item.tries < (setting.max_tries or 1):
                retry.append(item)
                return
            record = {
                "identity": item.identity,
                "context": context,
                "benchmark": item.benchmark,
                "id": item.problem.id,
                "method": setting.method,
                "setting": setting.label,
                "sample": item.sample,
                "setting_spec": setting.spec(),
                "problem_hash": item.problem.content_hash(),
                "seed": samplings[i].seed,
                "prompt": completion.prompt,
                "output": engine.tokenizer.decode(completion.output_token_ids, skip_special_tokens=False),
                "thinking_tokens": completion.thinking_tokens,
                "answer_tokens": completion.answer_tokens,
                "extensions_used": completion.extensions_used,
                "capped": completion.capped,
                "finish_reason": completion.finish_reason,
                "gold": item.problem.answer,
                "kind": item.problem.kind,
                "tries": item.tries,
                "fits": fits,
                "seconds": round(time.perf_counter() - start, 3),
                "answer": completion.answer,
                "forced": forced_offsets(engine.tokenizer, completion),
                "prefill_tokens": completion.prompt_tokens_processed,
            }
            recorder.put(record, item.problem.kind, item.problem.answer, completion.answer)

        engine.generate(requests, batch_size=config.batch_size, on_completion=on_completion)
        pending = retry


def _load_reward(config: EvalConfig, settings: list[Setting]):
    """The reward model, once, when a setting still to run needs one."""
    from s1.evaluate.rewards import load_reward_model

    if not any(s.search and s.search.reward for s in settings):
        return None
    return load_reward_model(config.reward_model, config.reward_kind, config.step_tag)


def _run_search(
    config: EvalConfig, engine: Engine, recorder: _Recorder, context: str, items: list[_Item], todo: list[_Item], reward
) -> None:
    """A parallel or tree-search setting, problem by problem: all of a problem's trajectories run as one
    batch. Parallel settings with the same trajectories (same forcing and N) still to do for the problem
    share one draw: majority, best-of-N and weighted majority then differ only in the answer they pick."""
    from dataclasses import replace as with_

    from s1.engines.base import StepRule
    from s1.evaluate.search import RebaseSettings, rebase, sample

    setting, temperature = (
        items[0].setting,
        config.temperature or 1.0,
    )  # parallel methods sample (temperature 1 by default)
    for item in items:
        if item.recorded:
            continue
        problem, start = item.problem, time.perf_counter()
        group = [item]
        if setting.method in PARALLEL:
            group = [
                it
                for it in todo
                if not it.recorded
                and it.benchmark == item.benchmark
                and it.problem is problem
                and it.setting.method in PARALLEL
                and it.setting.forcing == setting.forcing
                and it.setting.search.trajectories == setting.search.trajectories
            ]
        request = make_request(
            engine.tokenizer,
            engine.format_tokens,
            engine.context_length,
            setting.prompt(problem.question),
            setting.forcing,
            Sampling(temperature, config.top_p),
            config.system,
        )

        def sampling(node, j: int) -> Sampling:
            return with_(request.sampling, seed=derive_seed(config.seed, j, problem=problem.id, node=node))

        spec = setting.search
        if setting.method in PARALLEL:
            scorer = reward if any(it.setting.search.reward for it in group) else None
            result = sample(
                engine,
                request,
                problem.question,
                [sampling(None, j) for j in range(spec.trajectories)],
                config.batch_size,
                scorer,
                spec.aggregate,
                spec.delimiter,
            )
        else:
            params = RebaseSettings(
                spec.trajectories,
                StepRule(spec.delimiter, spec.max_step_tokens),
                spec.max_depth,
                spec.softmax_temperature,
                spec.aggregate,
            )
            result = rebase(engine, request, problem.question, reward, params, sampling, config.batch_size)
        shared = {
            "context": context,
            "benchmark": item.benchmark,
            "id": problem.id,
            "sample": 0,
            "temperature": temperature,
            "problem_hash": problem.content_hash(),
            "gold": problem.answer,
            "kind": problem.kind,
            "prompt": request.prompt,
            "trajectories": [t.to_dict() for t in result.trajectories],
            "generated_tokens": result.generated_tokens,
            "prefill_tokens": result.prefill_tokens,
            "reward_tokens": result.reward_tokens,
            "root_prefill": result.root_prefill,
            "tree": result.nodes,
            "thinking_tokens": result.generated_tokens,
            "answer_tokens": 0,
            "seconds": round(time.perf_counter() - start, 3),
        }
        for it in group:
            it.recorded = True
            record = {
                **shared,
                "identity": it.identity,
                "method": it.setting.method,
                "setting": it.setting.label,
                "setting_spec": it.setting.spec(),
                "trajectories": [dict(t) for t in shared["trajectories"]],
            }
            if not it.setting.search.reward:  # majority shares the draw but reads no reward
                record["reward_tokens"] = 0
            recorder.put(record, problem.kind, problem.answer, "")


def forced_offsets(tokenizer, completion) -> list[list]:
    """Budget forcing's own writing as [kind, start, end) character offsets into the record's `output`
    (what a report highlights: extensions, the forced end and answer prefix, a completed delimiter)."""
    ids, spans = completion.output_token_ids, completion.forced_spans

    def at(i: int) -> int:
        return len(tokenizer.decode(ids[:i], skip_special_tokens=False))

    return [[kind, at(start), at(end)] for kind, start, end in spans]


def _regrade(run: RunDir, grader: Grader, records: dict[str, dict]) -> dict[str, dict]:
    """Samples graded by another version of the grader are graded again (cheap next to generating them);
    the new grade is appended, so the file keeps both."""
    stale = [r for r in records.values() if r.get("grader") != GRADER_VERSION and "answer" in r and "kind" in r]
    for record in [r for r in stale if "trajectories" in r]:
        choose_answer(record, grader)
        run.append(record)
    stale = [r for r in stale if "trajectories" not in r]
    if stale:
        grades = grader.grade_many([(r["kind"], r["gold"], r["answer"]) for r in stale])
        for record, grade in zip(stale, grades):
            record.update(extracted=grade.extracted, correct=grade.correct, reason=grade.reason, grader=GRADER_VERSION)
            run.append(record)
    return records


def write_summary(run: RunDir, config: EvalConfig, summary: dict) -> None:
    import json

    from s1.report.plots import method_points, scaling_plot

    run.write("summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    run.write("summary.md", summary_markdown(summary))
    x = "mean_total_tokens" if config.plot_tokens == "total" else "mean_thinking_tokens"
    curves = [
        (f"{name}: {method}" if len(summary["benchmarks"]) > 1 else method, method_points(bench["settings"], method, x))
        for name, bench in summary["benchmarks"].items()
        for method in bench["methods"]
    ]
    searched = any(m in SEARCH for bench in summary["benchmarks"].values() for m in bench["methods"])
    xlabel = (
        "tokens processed (prompt, generated, reward model)"
        if config.plot_tokens == "total"
        else "generated tokens (search: all trajectories of a problem)"
        if searched
        else None
    )
    scaling_plot(
        curves, run.path / "scaling.png", title=f"{config.model}: {', '.join(summary['benchmarks'])}", xlabel=xlabel
    )


__all__ = ["EvalConfig", "run_eval", "summarize", "summary_markdown", "sample_identity"]
