"""A sweep, top to bottom: plan what is missing, run it, record it, summarize.

    plan      (plan.py)           every (benchmark, setting, problem, sample) with its identity; what is done
    run       (this module)       sample-based methods, setting by setting, rejection sampling redrawing;
              (search_runner.py)  search methods, problem by problem
    record    (recorder.py)       grade on a background thread, append to samples.jsonl, regrade stale grades
    summarize (summary.py)        rows, metrics, summary.json

Data flows one way: benchmark -> prompts -> engine with forcing -> completions -> grading -> metrics. The
evaluation never draws: summary.md and scaling.png are report/'s (`s1.report.run_report`).
"""

from __future__ import annotations

import time
from dataclasses import asdict

from s1.core import signals
from s1.core.rundir import RunDir
from s1.data.grading import Grader
from s1.engines import Engine, load_engine, make_request
from s1.evaluate.config import EvalConfig, context_hash
from s1.evaluate.methods import Setting
from s1.evaluate.plan import Item, Plan, item_sampling, plan
from s1.evaluate.recorder import Recorder, regrade
from s1.evaluate.records import Record, SampleRecord, Summary, parse_record
from s1.evaluate.search_runner import run_search
from s1.evaluate.sharing import batches, share
from s1.evaluate.summary import summarize


def run_eval(config: EvalConfig, output: str, engine: Engine | None = None, show_progress: bool = True) -> Summary:
    """Run (or resume) a sweep into `output`; returns the summary, also written there as summary.json."""
    settings = config.settings()
    benchmarks = config.load_benchmarks()
    with RunDir(output) as run, Grader() as grader:
        run.log_invocation(asdict(config))
        work = plan(config, settings, benchmarks, context_hash(config), run.records(parse_record))
        if work.todo:
            reward = _load_reward(config, [it.setting for it in work.todo])
            engine = engine or load_engine(
                config.model,
                config.engine,
                config.format,
                device=config.device,
                dtype=config.dtype,
                base_urls=config.base_urls,
                remote_mode=config.remote_mode,
                parallel=config.batch_size,
            )
            with _Progress(work, show_progress) as progress, Recorder(run, grader, progress.advance) as recorder:
                for setting, batch in batches(work, settings, config.share_sweep):
                    progress.describe(setting)
                    if setting.kind.search:
                        run_search(config, engine, recorder, work, batch, reward)
                    else:
                        run_samples(config, engine, recorder, work, batch)
        records = regrade(run, grader, run.records(parse_record))
        summary = summarize(config, settings, benchmarks, records, grader, skipped_lines=run.skipped_lines)
        signals.check()  # a Ctrl-C swallowed on the way (core/signals.py) must not end in a summary of a whole run
        run.write("summary.json", summary.to_text())
    return summary


def _load_reward(config: EvalConfig, settings: list[Setting]):
    """The reward model, once, when a setting still to run needs one."""
    from s1.evaluate.rewards import load_reward_model

    if not any(s.search and s.search.reward for s in settings):
        return None
    return load_reward_model(config.reward_model, config.reward_kind, config.step_tag)


def run_samples(config: EvalConfig, engine: Engine, recorder: Recorder, work: Plan, items: list[Item]) -> None:
    """Generate samples (of one setting, or of a sweep's settings that share trajectories: `sharing.batches`)
    and hand them to the recorder; rejection sampling redraws what does not fit, until it fits or its bound on
    tries is reached (then the sample is recorded with `fits` false)."""
    pending = items
    while pending:
        samplings = [item_sampling(config, it, it.setting.kind.temperature(config.temperature)) for it in pending]
        requests = [
            make_request(
                engine.tokenizer,
                engine.format_tokens,
                engine.context_length,
                it.setting.prompt(it.problem.question),
                it.setting.forcing,
                sampling,
                config.system,
                thinking=it.setting.kind.thinking,
            )
            for it, sampling in zip(pending, samplings)
        ]
        # an end of thinking matched as text takes tokens back, which a shared trajectory's branches do not
        # replay yet: such formats run each setting on its own (the same samples, none shared)
        if config.share_sweep and not engine.format_tokens.end_strings:
            requests = share(requests, [(it.benchmark, it.problem.id, it.sample, it.tries) for it in pending])
        start = time.perf_counter()
        retry: list[Item] = []

        def on_completion(i: int, completion) -> None:
            item = pending[i]
            setting = item.setting
            item.tries += 1
            fits = setting.reject_over is None or completion.thinking_tokens <= setting.reject_over
            if not fits and (setting.max_tries is None or item.tries < setting.max_tries):
                item.rejected_tokens += len(completion.output_token_ids) - completion.shared_tokens
                item.rejected_prefill_tokens += completion.prompt_tokens_processed
                retry.append(item)
                return
            record = SampleRecord(
                identity=item.identity,
                context=work.context,
                benchmark=item.benchmark,
                id=item.problem.id,
                method=setting.method,
                setting=setting.label,
                sample=item.sample,
                setting_spec=setting.spec(),
                problem_hash=item.problem.content_hash(),
                seed=samplings[i].seed,
                prompt=completion.prompt,
                output=engine.tokenizer.decode(completion.output_token_ids, skip_special_tokens=False),
                thinking_tokens=completion.thinking_tokens,
                answer_tokens=completion.answer_tokens,
                extensions_used=completion.extensions_used,
                capped=completion.capped,
                finish_reason=completion.finish_reason,
                gold=item.problem.answer,
                kind=item.problem.kind,
                tries=item.tries,
                fits=fits,
                seconds=round(time.perf_counter() - start, 3),
                answer=completion.answer,
                forced=forced_offsets(engine.tokenizer, completion),
                prefill_tokens=completion.prompt_tokens_processed,
                shared_tokens=completion.shared_tokens,
                output_tokens=len(completion.output_token_ids),
                separate_prefill_tokens=completion.separate_prefill_tokens,
                rejected_tokens=item.rejected_tokens,
                rejected_prefill_tokens=item.rejected_prefill_tokens,
            )
            recorder.put(record)

        engine.generate(requests, batch_size=config.batch_size, on_completion=on_completion)
        pending = retry


def forced_offsets(tokenizer, completion) -> list[list]:
    """Budget forcing's own writing as [kind, start, end) character offsets into the record's `output`
    (what a report highlights: extensions, the forced end and answer prefix, a completed delimiter)."""
    ids, spans = completion.output_token_ids, completion.forced_spans

    def at(i: int) -> int:
        return len(tokenizer.decode(ids[:i], skip_special_tokens=False))

    return [[kind, at(start), at(end)] for kind, start, end in spans]


class _Progress:
    """The progress bar on stderr: items done of the sweep, accuracy so far, tokens per second."""

    def __init__(self, work: Plan, show: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
        )
        # on stderr: `s1 eval ... > out.md` keeps only the table on stdout
        self.bar = Progress(*columns, console=Console(stderr=True), disable=not show, transient=False)
        done = len(work.items) - len(work.todo)
        self.task = self.bar.add_task("eval", total=len(work.items), completed=done, stats="")
        self.correct = self.graded = self.tokens = 0
        self.start = time.perf_counter()

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def describe(self, setting: Setting) -> None:
        self.bar.update(self.task, description=f"{setting.method} {setting.label}")

    def advance(self, record: Record) -> None:
        """Called by the recorder's thread for each record written."""
        self.graded += 1
        self.correct += bool(record.correct)
        self.tokens += record.thinking_tokens + record.answer_tokens
        acc = 100.0 * self.correct / self.graded
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(self.task, advance=1, stats=f"acc {acc:5.1f}% | {rate:6.1f} tok/s")
