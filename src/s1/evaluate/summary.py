"""A run's summary: one row per setting, then the paper's Control / Scaling / Performance per method (and the
stricter per-sample control beside the paper's, under its own name).

Sample-based settings give one row from their samples (with maj@k and pass@k when there are several per
problem); a search setting gives one row per n its records answer for (a parallel draw of N: n = 1, 2,
4 ... N). The rows and the summary are `records.SummaryRow` / `records.Summary`, which report/ reads.
"""

from __future__ import annotations

from dataclasses import asdict

from s1.core.errors import UserError
from s1.data.benchmarks import Problem
from s1.data.grading import Grader, text_classes
from s1.evaluate.config import EvalConfig, context_hash, sample_identity
from s1.evaluate.methods import METHODS, Setting
from s1.evaluate.metrics import accuracy, bootstrap_ci, control, majority_vote, pass_at_k, performance, scaling
from s1.evaluate.records import (
    BenchmarkSummary,
    Compute,
    MethodMetrics,
    Record,
    SampleRecord,
    SearchRecord,
    Summary,
    SummaryRow,
    answer_cut,
)

NOTES = [
    "accuracy: % of samples graded correct. 95% interval: percentile bootstrap over problems (2,000 resamples, "
    "seed 0); all samples of a resampled problem stay together.",
    "mean thinking tokens: thinking tokens per sample (forced extensions included), averaged; a setting's x position.",
    "Control: the paper's Eq. 1, % of a method's settings whose mean thinking tokens lie within the requested "
    "bounds (budget forcing: min <= mean <= cap; token/step-conditional: mean <= the stated budget; a setting "
    "with a thinking grace (label `grace=N`) is held to cap + N where its cap is enforced, the grace letting thinking "
    "finish its line past the cap by design). "
    "Class-conditional: `short` counts when its mean thinking is below the bare-question `default`, `long` when "
    "above; `default` itself is not counted.",
    "strict control: % of a method's settings whose every sample kept the bounds (not the paper's number; "
    "class-conditional settings ask for no per-sample bound and are not counted).",
    "rejection sampling: draws until the thinking fits the budget (the paper's procedure), or up to --max-tries; "
    "`tries` is the mean draws per sample, `unfit` the samples that never fit, left out of accuracy and thinking.",
    "Scaling: mean over all pairs of settings a < b (by mean thinking tokens) of the slope of accuracy, in points per "
    "1,000 thinking tokens and in points per doubling ((f(b)-f(a)) / log2(b/a)), the unit that reproduces the "
    "paper's Table 3. Reference settings (class-conditional `default`) are left out of Scaling and Performance.",
    "Performance: the best accuracy among the method's settings. Control, Scaling and Performance use only settings "
    "with every current problem done; a partial row is marked with its problem count.",
    "cut answers: samples whose answer a token limit stopped before it ended (finish reason length after thinking "
    "ended: the answer budget --max-answer-tokens, what the context leaves, or --max-tokens); such an answer may "
    "lack its final line. Search rows count the trajectories the point answers from. A --max-tokens cut inside "
    "the thinking is not counted.",
    "maj@k: the most common answer among a problem's first k samples, answers grouped by math-verify equivalence; "
    "pass@k: the unbiased estimator of Chen et al. (2021).",
    "Parallel and tree search (majority, best_of_n, weighted_majority, rebase): one answer per problem chosen from "
    "many trajectories; their x position is the tokens generated per problem, summed over every trajectory and tree "
    "node (forced ones included), not one trajectory's thinking. A parallel setting of N trajectories also gives the "
    "points n = 1, 2, 4 ... from its first n (with several N in one directory, the largest N's). The compute table "
    "adds the prompt tokens the engine processed (in process: what forked or kept prefixes saved is not counted; "
    "through servers: the tokens sent, an upper bound) and the tokens the reward model scored.",
    "compute with and without sharing (sample-based settings): tokens per problem, summed over its samples. With "
    "sharing: what this run generated (a shared sweep's branch counts only the tokens after it forked off the "
    "trajectory it followed) and the prompt tokens it processed; without: each setting run alone (its whole output; "
    "its prompt, or through the re-prefill loop every round's prompt). The last row sums the settings.",
]


def summarize(
    config: EvalConfig,
    settings: list[Setting],
    benchmarks: dict[str, list[Problem]],
    records: dict[str, Record],
    grader: Grader | None = None,
    skipped_lines: int = 0,
) -> Summary:
    """Per benchmark: one row per setting (every setting of the directory's context), then Control / Scaling /
    Performance per method. Only samples whose identity matches the current problems are counted."""
    context = context_hash(config)
    out, used = {}, 0
    for name, problems in benchmarks.items():
        rows: list[SummaryRow] = []
        for s in _all_settings(config, context, settings, name, records):
            if s.search:
                found = [records.get(sample_identity(context, s, p, 0)) for p in problems]
                found = [r for r in found if isinstance(r, SearchRecord)]
                used += len(found)
                for row in _search_rows(s, found, len(problems)):
                    _keep_largest_draw(rows, row)
                continue
            per_problem = []
            for p in problems:
                samples = [records.get(sample_identity(context, s, p, k)) for k in range(config.samples)]
                if all(isinstance(r, SampleRecord) for r in samples):
                    per_problem.append((p, samples))
            if per_problem:
                used += sum(len(samples) for _, samples in per_problem)
                rows.append(_sample_row(config, s, per_problem, len(problems), grader))
        _relative_control(rows)
        sampled = [r.compute for r in rows if r.trajectories is None]
        out[name] = BenchmarkSummary(
            problems=len(problems), settings=rows, methods=_method_metrics(rows), compute=Compute.total(sampled)
        )
    return Summary(
        model=config.model,
        context=context,
        config=asdict(config),
        benchmarks=out,
        notes=NOTES,
        unused_samples=len(records) - used,
        unreadable_lines=skipped_lines,
    )


def _setting_order(s: Setting) -> tuple:
    cap = s.forcing.max_thinking_tokens
    order = list(METHODS)
    return (
        order.index(s.method) if s.method in METHODS else len(order),
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
        if r.context == context and r.benchmark == name and (r.method, r.setting) not in known:
            try:
                extra.setdefault((r.method, r.setting), Setting.from_spec(r.setting_spec))
            except (KeyError, TypeError, UserError):
                continue
    return list(settings) + sorted(extra.values(), key=_setting_order)


def _sample_row(
    config: EvalConfig,
    s: Setting,
    per_problem: list[tuple[Problem, list[SampleRecord]]],
    problems: int,
    grader: Grader | None,
) -> SummaryRow:
    every = [r for _, samples in per_problem for r in samples]
    # A rejection-sampling draw that never fit is not a sample of the method: out of accuracy and thinking,
    # counted in `unfit` (docs/design.md "Methods").
    kept = [(p, [r for r in samples if r.fits]) for p, samples in per_problem]
    kept = [(p, samples) for p, samples in kept if samples]
    groups = [[r.correct for r in samples] for _, samples in kept]
    flat = [r for _, samples in kept for r in samples]
    lo, hi = bootstrap_ci(groups)
    mean_thinking = sum(r.thinking_tokens for r in flat) / len(flat) if flat else float("nan")
    row = SummaryRow(
        method=s.method,
        setting=s.label,
        problems=len(per_problem),
        samples=len(every),
        complete=len(per_problem) == problems,
        reference=s.reference,
        accuracy=accuracy([c for g in groups for c in g]),
        ci_low=lo,
        ci_high=hi,
        mean_thinking_tokens=mean_thinking,
        mean_total_tokens=(
            sum(r.thinking_tokens + r.answer_tokens + r.prefill_tokens for r in flat) / len(flat)
            if flat
            else float("nan")
        ),
        in_control=None if s.bounds is None else bool(flat) and s.in_bounds(mean_thinking),
        strict_in_control=None
        if s.bounds is None
        else bool(flat) and all(s.in_bounds(r.thinking_tokens) for r in flat),
        relative=s.relative,
        cut_answers=sum(answer_cut(r.finish_reason, r.answer_tokens) for r in every),
        compute=Compute.of(every, len(per_problem)),
    )
    if s.reject_over is not None:
        row.mean_tries = sum(r.tries for r in every) / len(every)
        row.unfit = len(every) - len(flat)
    if config.samples > 1 and kept:
        classes = [_voting(grader, p.kind, samples) for p, samples in kept]
        row.maj_at_k, row.pass_at_k = {}, {}
        for k in range(1, config.samples + 1):
            votes = [majority_vote(c[:k]) for c in classes]
            row.maj_at_k[k] = accuracy([v is not None and samples[v].correct for v, (_, samples) in zip(votes, kept)])
            passes = [pass_at_k(len(samples), sum(r.correct for r in samples), k) for _, samples in kept]
            row.pass_at_k[k] = 100.0 * sum(passes) / len(kept)
    return row


def _voting(grader: Grader | None, kind: str, samples: list[SampleRecord]) -> list[int | None]:
    answers = [r.extracted for r in samples]
    return grader.classes(kind, answers) if grader is not None else text_classes(answers)


def _search_rows(setting: Setting, records: list[SearchRecord], problems: int) -> list[SummaryRow]:
    """Rows of one search setting: one per n its records answer for, over the problems done."""
    if not records:
        return []
    rows = []
    for n in sorted(records[0].points):
        points = [r.points[n] for r in records if n in r.points]
        if len(points) < len(records):
            continue
        lo, hi = bootstrap_ci([[p.correct] for p in points])

        def mean(key: str) -> float:
            return sum(getattr(p, key) for p in points) / len(points)

        rows.append(
            SummaryRow(
                method=setting.method,
                setting=setting.kind.label(setting, n),
                problems=len(points),
                samples=len(points),
                complete=len(points) == problems,
                reference=False,
                accuracy=accuracy([p.correct for p in points]),
                ci_low=lo,
                ci_high=hi,
                mean_thinking_tokens=mean("generated_tokens"),
                mean_prefill_tokens=mean("prefill_tokens"),
                mean_reward_tokens=mean("reward_tokens"),
                mean_total_tokens=mean("generated_tokens") + mean("prefill_tokens") + mean("reward_tokens"),
                in_control=None,
                relative=None,
                trajectories=n,
                draw=setting.search.trajectories,
                cut_answers=sum(
                    answer_cut(t.finish_reason, t.answer_tokens)
                    for r in records
                    for t in (r.trajectories[:n] if setting.kind.parallel else r.trajectories)
                ),
            )
        )
    return rows


def _keep_largest_draw(rows: list[SummaryRow], row: SummaryRow) -> None:
    """n=2 of N=4 and n=2 of N=8 are one point: the larger draw's stands."""
    same = next((i for i, r in enumerate(rows) if (r.method, r.setting) == (row.method, row.setting)), None)
    if same is None:
        rows.append(row)
    elif row.draw > rows[same].draw:
        rows[same] = row


def _relative_control(rows: list[SummaryRow]) -> None:
    """Class-conditional settings are in control when their mean thinking lies on the asked side of the default's."""
    for row in rows:
        if row.relative is None:
            continue
        default = next((r for r in rows if r.method == row.method and r.reference), None)
        if default is not None:
            x, ref = row.mean_thinking_tokens, default.mean_thinking_tokens
            row.in_control = x < ref if row.relative == "below" else x > ref


def _method_metrics(rows: list[SummaryRow]) -> dict[str, MethodMetrics]:
    methods = {}
    for method in dict.fromkeys(r.method for r in rows):
        # a setting with problems still missing (an interrupted run, an older --limit) would skew the metrics
        mine = [r for r in rows if r.method == method and r.complete]
        points = [(r.mean_thinking_tokens, r.accuracy) for r in mine if not r.reference]
        methods[method] = MethodMetrics(
            control=control([r.in_control for r in mine]),
            strict_control=control([r.strict_in_control for r in mine]),
            scaling_per_1k_tokens=scaling(points, "1k"),
            scaling_per_doubling=scaling(points, "doubling"),
            performance=performance([r.accuracy for r in mine if not r.reference]),
        )
    return methods
