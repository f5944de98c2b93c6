"""Sweeps: run every (benchmark, method, setting, problem, sample), grade, record, resume, summarize.

Data flows one way: benchmark -> prompts -> engine with forcing -> completions -> grading -> metrics.
Grading runs in a background thread (its math in a worker process) while the engine decodes on.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.formats import get_format
from s1.core.rundir import RunDir, identity_hash
from s1.data.benchmarks import Problem, benchmark_problems
from s1.data.grading import GRADER_VERSION, Grader, text_classes
from s1.engines import ENGINES, Engine, Sampling, load_engine, make_request
from s1.engines.base import SEED_LIMIT
from s1.evaluate.methods import METHODS, NEEDS_REWARD, PARALLEL, SEARCH, SearchSpec, Setting, build_settings
from s1.evaluate.metrics import accuracy, bootstrap_ci, control, majority_vote, pass_at_k, performance, scaling
from s1.evaluate.search_records import choose_answer, search_rows

# Run-level fields that change what a sample is. With the setting's full specification, the problem's
# content hash and the sample index they make a sample's identity; the summary covers the settings of
# the directory whose samples share this context.
CONTEXT_FIELDS = (
    "model",
    "engine",
    "format",
    "system",
    "temperature",
    "top_p",
    "seed",
    "min_thinking_tokens",
    "extensions",
    "answer_prefix",
    "max_answer_tokens",
)

NOTES = [
    "accuracy: % of samples graded correct. 95% interval: percentile bootstrap over problems (2,000 resamples, "
    "seed 0); all samples of a resampled problem stay together.",
    "mean thinking tokens: thinking tokens per sample (forced extensions included), averaged; a setting's x position.",
    "Control: % of a method's settings whose every sample kept the requested thinking bounds (budget forcing: "
    "min <= tokens <= cap; token/step-conditional: <= the stated budget). Class-conditional: `short` counts when "
    "its mean thinking is below the bare-question `default`, `long` when above; `default` itself is not counted.",
    "Scaling: mean over all pairs of settings a < b (by mean thinking tokens) of the slope of accuracy, in points per "
    "1,000 thinking tokens and in points per doubling ((f(b)-f(a)) / log2(b/a)), the unit that reproduces the "
    "paper's Table 3. Reference settings (class-conditional `default`) are left out of Scaling and Performance.",
    "Performance: the best accuracy among the method's settings. Control, Scaling and Performance use only settings "
    "with every current problem done; a partial row is marked with its problem count.",
    "maj@k: the most common answer among a problem's first k samples, answers grouped by math-verify equivalence; "
    "pass@k: the unbiased estimator of Chen et al. (2021).",
    "Parallel and tree search (majority, best_of_n, weighted_majority, rebase): one answer per problem chosen from "
    "many trajectories; their x position is the tokens generated per problem, summed over every trajectory and tree "
    "node (forced ones included), not one trajectory's thinking. A parallel setting of N trajectories also gives the "
    "points n = 1, 2, 4 ... from its first n (with several N in one directory, the largest N's). The compute table adds "
    "the prompt tokens the engine processed (in process: what forked or kept prefixes saved is not counted; through "
    "servers: the tokens sent, an upper bound) and the tokens the reward model scored.",
]


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
    include_path: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    id_field: str | None = None
    answer_kind: str | None = None
    limit: int | None = None
    ids: list[str] | None = None
    base_urls: list[str] | None = None
    remote_mode: str = "auto"
    only_current: bool = False
    reward_model: str | None = None
    reward_kind: str = "auto"
    step_tag: str | None = None
    reward_aggregate: str = "last"
    widths: list[int] = field(default_factory=lambda: [16])
    step_delimiter: str = "\n\n"
    max_step_tokens: int = 256
    max_depth: int = 32
    rebase_temperature: float = 0.2
    rebase_vote: str = "weighted"
    plot_tokens: str = "generated"

    def forcing(self) -> BudgetForcing:
        return BudgetForcing(
            max_thinking_tokens=None,
            min_thinking_tokens=self.min_thinking_tokens,
            extensions=tuple(self.extensions),
            answer_prefix=self.answer_prefix,
            max_answer_tokens=self.max_answer_tokens,
        )

    def context(self) -> dict:
        """Numbers as floats, so temperature 0 from Python and 0.0 from the command line are one context."""
        values = {name: getattr(self, name) for name in CONTEXT_FIELDS}
        values["temperature"], values["top_p"] = float(self.temperature), float(self.top_p)
        return values

    def settings(self) -> list[Setting]:
        """Every setting of the sweep; all run-level values are checked here, before anything is loaded."""
        if self.samples < 1:
            raise UserError(f"--samples must be at least 1, got {self.samples}.")
        if (
            self.samples > 1
            and self.temperature == 0
            and any(m not in ("rejection_sampling",) + SEARCH for m in self.methods)
        ):
            raise UserError("--samples above 1 needs --temperature above 0; greedy samples would all be the same.")
        self.check_search()
        if self.max_tries < 1:
            raise UserError(f"--max-tries must be at least 1, got {self.max_tries}.")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.ids is not None and not self.ids:
            raise UserError("--ids names no id; give comma-separated problem ids such as 60,71.")
        if not self.methods:
            raise UserError("--method names no method; choose from " + ", ".join(METHODS) + ".")
        Sampling(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        get_format(self.format)
        if self.engine not in ENGINES:
            raise UserError(f"Unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}.")
        if self.engine == "remote" and not self.base_urls:
            raise UserError("--engine remote needs --base-url URL of an OpenAI-compatible server.")
        for cap in self.max_thinking_tokens:
            BudgetForcing(max_thinking_tokens=cap, min_thinking_tokens=self.min_thinking_tokens)
        for k in self.num_ignore:
            BudgetForcing(num_ignore=k)
        settings = build_settings(
            self.methods,
            self.forcing(),
            self.max_thinking_tokens,
            self.num_ignore,
            self.steps,
            self.tokens_per_step,
            self.search_spec(),
            self.widths,
        )
        # rejection sampling's bounded tries change what its samples are: they belong to its settings
        return [
            Setting(**{**s.__dict__, "max_tries": self.max_tries}) if s.reject_over is not None else s for s in settings
        ]

    def search_spec(self) -> SearchSpec:
        """The search settings; a reward model directory by its absolute path, so a run resumed from
        elsewhere finds its samples (and another model at the same relative path does not)."""
        reward = self.reward_model
        if reward and not reward.startswith(("http://", "https://")) and Path(reward).expanduser().is_dir():
            reward = str(Path(reward).expanduser().resolve())
        return SearchSpec(
            self.samples,
            reward,
            self.reward_kind,
            self.step_tag,
            self.reward_aggregate,
            self.step_delimiter,
            self.max_step_tokens,
            self.max_depth,
            float(self.rebase_temperature),
            self.rebase_vote,
        )

    def check_search(self) -> None:
        """The parallel and tree-search values, checked before anything loads."""
        from s1.evaluate.rewards import AGGREGATES

        needs = [m for m in self.methods if m in NEEDS_REWARD]
        if needs and not self.reward_model:
            raise UserError(
                f"Method {needs[0]} needs a reward model; pass --reward-model (a model directory, an http:// "
                "URL of a /pooling server, or module:function)."
            )
        if self.reward_aggregate not in AGGREGATES:
            raise UserError(
                f"Unknown --reward-aggregate {self.reward_aggregate!r}; choose from {', '.join(AGGREGATES)}."
            )
        if self.plot_tokens not in ("generated", "total"):
            raise UserError(f"--plot-tokens must be generated or total, got {self.plot_tokens!r}.")
        if "rebase" in self.methods:
            if self.rebase_vote not in ("weighted", "majority"):
                raise UserError(f"--rebase-vote must be weighted or majority, got {self.rebase_vote!r}.")
            from s1.engines.base import StepRule
            from s1.evaluate.search import RebaseSettings  # imports torch: only when REBASE runs

            for width in self.widths:
                RebaseSettings(
                    width,
                    StepRule(self.step_delimiter, self.max_step_tokens),
                    self.max_depth,
                    self.rebase_temperature,
                    self.reward_aggregate,
                )

    def load_benchmarks(self) -> dict[str, list[Problem]]:
        """Benchmark name -> its problems (validated: a bad file or field fails here, before any model loads)."""
        common = dict(answer_kind=self.answer_kind, limit=self.limit, ids=self.ids)
        if self.data:
            return dict(
                [
                    benchmark_problems(
                        data=self.data,
                        question_field=self.question_field,
                        answer_field=self.answer_field,
                        id_field=self.id_field,
                        **common,
                    )
                ]
            )
        if not self.benchmarks:
            raise UserError("--benchmark names no benchmark; pass one such as aime24, or --data FILE.")
        return dict(
            benchmark_problems(name, data_dir=self.data_dir, include_path=self.include_path, **common)
            for name in self.benchmarks
        )


def context_hash(config: EvalConfig) -> str:
    return identity_hash(config.context())


def sample_identity(context: str, setting: Setting, problem: Problem, sample: int) -> str:
    """Everything that changes a sample: run context, the setting's full spec, the problem's content and id
    (its seed derives from the id), the sample index."""
    return identity_hash([context, setting.spec(), problem.content_hash(), str(problem.id), sample])


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


def problem_seed(seed: int, problem_id: str, sample: int, tries: int) -> int:
    """A sample's seed comes from the problem's id, not its position: --limit/--ids never change a sample."""
    return int(identity_hash([seed, str(problem_id), sample, tries]), 16) % SEED_LIMIT


def _sampling(config: EvalConfig, item: _Item, temperature: float) -> Sampling:
    seed = None if config.seed is None else problem_seed(config.seed, item.problem.id, item.sample, item.tries)
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
            seed = (
                None
                if config.seed is None
                else problem_seed(config.seed, problem.id, f"{node}.{j}" if node is not None else j, 0)
            )
            return with_(request.sampling, seed=seed)

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


def _setting_order(s: Setting) -> tuple:
    cap = s.forcing.max_thinking_tokens
    return (
        METHODS.index(s.method) if s.method in METHODS else len(METHODS),
        not s.reference,
        float("inf") if cap is None else cap,
        s.forcing.num_ignore,
        s.label,
    )


def _all_settings(config: EvalConfig, context: str, settings: list[Setting], name: str, records: dict) -> list[Setting]:
    """This invocation's settings, then every other setting in the directory run in the same context."""
    if config.only_current:
        return list(settings)
    known = {(s.method, s.label) for s in settings}
    extra: dict[tuple, Setting] = {}
    for r in records.values():
        if r.get("context") == context and r.get("benchmark") == name and (r["method"], r["setting"]) not in known:
            try:
                extra.setdefault((r["method"], r["setting"]), Setting.from_spec(r["setting_spec"]))
            except (KeyError, TypeError, UserError):
                continue
    return list(settings) + sorted(extra.values(), key=_setting_order)


def _voting(grader: Grader | None, kind: str, samples: list[dict]) -> list[int | None]:
    answers = [r.get("extracted") for r in samples]
    return grader.classes(kind, answers) if grader is not None else text_classes(answers)


def summarize(
    config: EvalConfig,
    settings: list[Setting],
    benchmarks: dict[str, list[Problem]],
    records: dict,
    grader: Grader | None = None,
    skipped_lines: int = 0,
) -> dict:
    """Per benchmark: one row per setting (every setting of the directory's context), then Control / Scaling /
    Performance per method. Only samples whose identity matches the current problems are counted."""
    context = context_hash(config)
    out = {}
    used = 0
    for name, problems in benchmarks.items():
        rows = []
        for s in _all_settings(config, context, settings, name, records):
            if s.search:
                found = [records.get(sample_identity(context, s, p, 0)) for p in problems]
                found = [r for r in found if r and "points" in r]
                used += len(found)
                for row in search_rows(s, found, len(problems)):
                    # n=2 of N=4 and n=2 of N=8 are one point: the larger draw's stands
                    same = next(
                        (r for r in rows if (r["method"], r["setting"]) == (row["method"], row["setting"])), None
                    )
                    if same is None:
                        rows.append(row)
                    elif row["draw"] > same["draw"]:
                        rows[rows.index(same)] = row
                continue
            per_problem = []
            for p in problems:
                samples = [records.get(sample_identity(context, s, p, k)) for k in range(config.samples)]
                if all(samples):
                    per_problem.append((p, samples))
            if not per_problem:
                continue
            used += sum(len(samples) for _, samples in per_problem)
            groups = [[bool(r["correct"]) for r in samples] for _, samples in per_problem]
            flat = [r for _, samples in per_problem for r in samples]
            lo, hi = bootstrap_ci(groups)
            row = {
                "method": s.method,
                "setting": s.label,
                "problems": len(per_problem),
                "samples": len(flat),
                "complete": len(per_problem) == len(problems),
                "reference": s.reference,
                "accuracy": accuracy([c for g in groups for c in g]),
                "ci_low": lo,
                "ci_high": hi,
                "mean_thinking_tokens": sum(r["thinking_tokens"] for r in flat) / len(flat),
                "mean_total_tokens": sum(
                    r["thinking_tokens"] + r["answer_tokens"] + r.get("prefill_tokens", 0) for r in flat
                )
                / len(flat),
                "in_control": None if s.bounds is None else all(s.in_bounds(r["thinking_tokens"]) for r in flat),
                "relative": s.relative,
            }
            if config.samples > 1:
                row["maj@k"], row["pass@k"] = {}, {}
                classes = [_voting(grader, p.kind, samples) for p, samples in per_problem]
                for k in range(1, config.samples + 1):
                    votes = [majority_vote(c[:k]) for c in classes]
                    row["maj@k"][k] = accuracy(
                        [v is not None and bool(samples[v]["correct"]) for v, (_, samples) in zip(votes, per_problem)]
                    )
                    row["pass@k"][k] = (
                        100.0
                        * sum(
                            pass_at_k(len(samples), sum(bool(r["correct"]) for r in samples), k)
                            for _, samples in per_problem
                        )
                        / len(per_problem)
                    )
            rows.append(row)
        _relative_control(rows)
        methods = {}
        for method in dict.fromkeys(r["method"] for r in rows):
            # a setting with problems still missing (an interrupted run, an older --limit) would skew the metrics
            mine = [r for r in rows if r["method"] == method and r["complete"]]
            points = [(r["mean_thinking_tokens"], r["accuracy"]) for r in mine if not r["reference"]]
            methods[method] = {
                "control": control([r["in_control"] for r in mine]),
                "scaling_per_1k_tokens": scaling(points, "1k"),
                "scaling_per_doubling": scaling(points, "doubling"),
                "performance": performance([r["accuracy"] for r in mine if not r["reference"]]),
            }
        out[name] = {"problems": len(problems), "settings": rows, "methods": methods}
    return {
        "model": config.model,
        "context": context,
        "config": asdict(config),
        "benchmarks": out,
        "notes": NOTES,
        "unused_samples": len(records) - used,
        "unreadable_lines": skipped_lines,
    }


def _relative_control(rows: list[dict]) -> None:
    """Class-conditional settings are in control when their mean thinking lies on the asked side of the default's."""
    for row in rows:
        if row["relative"] is None:
            continue
        default = next((r for r in rows if r["method"] == row["method"] and r["reference"]), None)
        if default is not None:
            x, ref = row["mean_thinking_tokens"], default["mean_thinking_tokens"]
            row["in_control"] = x < ref if row["relative"] == "below" else x > ref


def _fmt(value, spec: str = ".1f", missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def summary_markdown(summary: dict, title: str | None = None, notes: bool = True) -> str:
    lines = [f"# {title or 's1 eval: ' + summary['model']}", ""]
    for name, bench in summary["benchmarks"].items():
        lines += [
            f"## {name}",
            "",
            "| method | setting | n | mean thinking tokens | accuracy % (95% CI) | in control |",
            "|---|---|---|---|---|---|",
        ]
        for r in bench["settings"]:
            control_text = "–" if r["in_control"] is None else ("yes" if r["in_control"] else "no")
            n = f"{r['samples']}" + (
                "" if r.get("complete", True) else f" ({r['problems']} of {bench['problems']} problems)"
            )
            lines.append(
                f"| {r['method']} | {r['setting']} | {n} | {r['mean_thinking_tokens']:.0f} | "
                f"{r['accuracy']:.1f} ({r['ci_low']:.1f}–{r['ci_high']:.1f}) | {control_text} |"
            )
        if any("maj@k" in r for r in bench["settings"]):
            ks = list(next(r for r in bench["settings"] if "maj@k" in r)["maj@k"])
            lines += [
                "",
                "| method | setting | "
                + " | ".join(f"maj@{k}" for k in ks)
                + " | "
                + " | ".join(f"pass@{k}" for k in ks)
                + " |",
                "|---|---|" + "---|" * (2 * len(ks)),
            ]
            for r in bench["settings"]:
                if "maj@k" in r:
                    lines.append(
                        f"| {r['method']} | {r['setting']} | "
                        + " | ".join(f"{r['maj@k'][k]:.1f}" for k in ks)
                        + " | "
                        + " | ".join(f"{r['pass@k'][k]:.1f}" for k in ks)
                        + " |"
                    )
        searched = [r for r in bench["settings"] if "mean_prefill_tokens" in r]
        if searched:
            lines += [
                "",
                "| method | setting | generated tokens / problem | prompt tokens processed / problem | "
                "reward-model tokens / problem | total |",
                "|---|---|---|---|---|---|",
            ]
            for r in searched:
                lines.append(
                    f"| {r['method']} | {r['setting']} | {r['mean_thinking_tokens']:.0f} | {r['mean_prefill_tokens']:.0f} | "
                    f"{r['mean_reward_tokens']:.0f} | {r['mean_total_tokens']:.0f} |"
                )
        lines += [
            "",
            "| method | Control % | Scaling (points / 1k thinking tokens) | Scaling (points / doubling) | Performance % |",
            "|---|---|---|---|---|",
        ]
        for method, m in bench["methods"].items():
            lines.append(
                f"| {method} | {_fmt(m['control'])} | {_fmt(m['scaling_per_1k_tokens'], '.2f')} | "
                f"{_fmt(m['scaling_per_doubling'], '.2f')} | {_fmt(m['performance'])} |"
            )
        lines.append("")
    if not notes:
        return "\n".join(lines) + "\n"
    lines += ["How to read this table:", ""] + [f"- {note}" for note in summary.get("notes", [])]
    if summary.get("unused_samples"):
        lines.append(
            f"- {summary['unused_samples']} samples in samples.jsonl belong to other configurations or problems "
            "and are not counted here."
        )
    if summary.get("unreadable_lines"):
        lines.append(f"- {summary['unreadable_lines']} unreadable lines in samples.jsonl were skipped.")
    return "\n".join(lines) + "\n"


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
