"""What a run directory holds, as types: a sample, a search record (with its trajectories), the summary
and its rows; one writer (`to_json`) and one reader (`parse_record`, `parse_summary`) for each.

The runner writes these, the summary and `s1 report` (tables, plot, HTML page) read them back. Keys and
their order are those of the dict literals the types replaced, so directories written before and after
read alike; fields that older versions did not write have defaults (README: "Run directory").

Reading validates every field's type (pydantic, strict, on the JSON text): a line that is valid JSON but
says `"correct": "false"`, `"thinking_tokens": "12"` or lacks a field is refused, and the run directory
skips and counts it exactly like an unreadable line, so it can neither crash a summary nor count as a
right answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cache
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Discriminator, Field, Tag, TypeAdapter

_STRICT = ConfigDict(strict=True)
"""No coercion: "12" is not a number, "false" is not a verdict, 1 is not true."""

Count = Annotated[int, Field(ge=0)]
"""Tokens, tries, a sample index: never negative (a negative count would pull a mean down unseen)."""
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""Wall time: a finite, non-negative number (NaN or -1 would poison every mean it enters)."""
_NAN_FOR_NULL = BeforeValidator(lambda v: float("nan") if v is None else v)
Undefined = Annotated[float, _NAN_FOR_NULL]
"""A number that may be undefined (a setting with no sample counted has no accuracy): NaN in memory, `null` in
summary.json, since NaN is not JSON (`finite`); reports show it as n/a."""
Interval = Annotated[float | None, _NAN_FOR_NULL]
"""An interval's end: `null` in the file is undefined (NaN), as `Undefined`; an absent key (a summary from before
intervals) stays None."""


def finite(value):
    """A JSON document with every NaN or infinity as null: what the JSON standard allows (Python's json module
    would write the non-standard NaN, which other readers refuse)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


@dataclass(kw_only=True)
class Trajectory:
    """One finished trajectory of a parallel or tree search: what grading and voting need, and its cost."""

    __pydantic_config__ = _STRICT
    answer: str
    thinking_tokens: Count
    answer_tokens: Count
    generated_tokens: Count
    """Tokens of this trajectory's output (in a tree, steps it shares with others count here for each; the
    search's `generated_tokens` counts every node once)."""
    finish_reason: str
    output: str
    reward: float | None = None
    node: int | None = None
    prefill_tokens: Count = 0
    """Prompt tokens processed for this trajectory alone (after the root's)."""
    reward_tokens: Count = 0
    extracted: str | None = None
    correct: bool | None = None
    """Filled by grading."""

    @classmethod
    def of(cls, completion, tokenizer, **fields) -> Trajectory:
        return cls(
            answer=completion.answer,
            thinking_tokens=completion.thinking_tokens,
            answer_tokens=completion.answer_tokens,
            generated_tokens=len(completion.output_token_ids),
            finish_reason=completion.finish_reason,
            output=tokenizer.decode(completion.output_token_ids, skip_special_tokens=False),
            **fields,
        )


@dataclass(kw_only=True)
class SampleRecord:
    """One graded sample of a sample-based method (budget forcing, the conditional baselines, rejection
    sampling): one line of samples.jsonl."""

    __pydantic_config__ = _STRICT
    identity: str
    context: str
    benchmark: str
    id: str
    method: str
    setting: str
    sample: Count
    setting_spec: dict[str, Any]
    problem_hash: str
    seed: int | None
    prompt: str
    output: str
    thinking_tokens: Count
    answer_tokens: Count
    extensions_used: Count
    capped: bool
    finish_reason: str
    gold: str
    kind: str
    tries: Count
    fits: bool
    seconds: Seconds
    answer: str | None = None
    """The text graded; records written before it was kept are not graded again."""
    forced: list[tuple[str, int, int]] = field(default_factory=list)
    """Budget forcing's own writing as (kind, start, end) character offsets into `output`."""
    prefill_tokens: Count = 0
    shared_tokens: Count = 0
    """Leading output tokens generated once for several settings of a shared budget sweep (the sample is the
    same either way; its own generation cost is len(output tokens) minus these)."""
    extracted: str | None = None
    correct: bool | None = None
    reason: str | None = None
    grader: int | None = None
    """Filled by grading (the grader's version: another version's grades are redone)."""
    output_tokens: Count | None = None
    """Tokens of the output (thinking, forced text, answer): what the setting run alone generates. This run
    generated `output_tokens - shared_tokens` of them. None in records written before it was counted."""
    separate_prefill_tokens: Count | None = None
    """Prompt tokens the setting run alone processes, where sharing changed it (a shared sweep's branch);
    None where it is `prefill_tokens`."""
    rejected_tokens: Count = 0
    rejected_prefill_tokens: Count = 0
    """Rejection sampling: tokens generated and prompt tokens processed by the draws that did not fit before
    this one (the method's real cost; never shared, so the same with sharing or without)."""

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def compute(self) -> tuple[int, int, int, int] | None:
        """(generated, generated alone, prompt tokens processed, prompt tokens alone); None for a record
        written before `output_tokens` was counted."""
        if self.output_tokens is None:
            return None
        alone = self.separate_prefill_tokens if self.separate_prefill_tokens is not None else self.prefill_tokens
        out, prompt = self.rejected_tokens, self.rejected_prefill_tokens
        return (
            out + self.output_tokens - self.shared_tokens,
            out + self.output_tokens,
            prompt + self.prefill_tokens,
            prompt + alone,
        )

    def graded(self, grade, version: int) -> SampleRecord:
        """The record with a verdict (`grading.Grade`) from grader `version`."""
        return replace(self, extracted=grade.extracted, correct=grade.correct, reason=grade.reason, grader=version)


@dataclass(kw_only=True)
class Point:
    """A search record's answer from its first n trajectories, and what those cost."""

    __pydantic_config__ = _STRICT
    choice: int | None
    correct: bool
    generated_tokens: Count
    prefill_tokens: Count
    reward_tokens: Count


@dataclass(kw_only=True)
class SearchRecord:
    """One problem of a parallel or tree-search setting: every trajectory, REBASE's tree, and the answer
    chosen per n (`points`): one line of samples.jsonl."""

    __pydantic_config__ = _STRICT
    context: str
    benchmark: str
    id: str
    sample: Count
    temperature: float | None = None
    problem_hash: str
    gold: str
    kind: str
    prompt: str
    trajectories: list[Trajectory]
    generated_tokens: Count
    prefill_tokens: Count
    reward_tokens: Count
    root_prefill: Count
    tree: list[dict[str, Any]]
    """REBASE's nodes: id, parent, depth, step text, tokens, score, children given, finished."""
    thinking_tokens: Count
    answer_tokens: Count
    seconds: Seconds
    identity: str
    method: str
    setting: str
    setting_spec: dict[str, Any]
    points: dict[int, Point] = field(default_factory=dict)
    correct: bool | None = None
    extracted: str | None = None
    answer: str | None = None
    reason: str | None = None
    grader: int | None = None
    """Filled by grading (`recorder.choose_answer`)."""

    def to_json(self) -> dict:
        out = asdict(self)
        out["points"] = {str(n): p for n, p in out["points"].items()}
        return out


Record = SampleRecord | SearchRecord


def answer_cut(finish_reason: str, answer_tokens: int) -> bool:
    """Whether a token limit stopped the answer (not the thinking) before it ended: finish reason "length" after
    at least one answer token, whichever limit it was (the answer budget, what the context leaves, --max-tokens).
    A --max-tokens cut inside the thinking has no answer tokens and is not an answer cut."""
    return finish_reason == "length" and answer_tokens > 0


def _kind(line) -> str:
    """A search record holds its trajectories; anything else is read as a sample."""
    return "search" if isinstance(line, dict) and "trajectories" in line else "sample"


_LINE = Annotated[Annotated[SearchRecord, Tag("search")] | Annotated[SampleRecord, Tag("sample")], Discriminator(_kind)]


@cache
def _adapter(kind) -> TypeAdapter:
    """Validators are built once, on first use (reading is the only place that needs pydantic)."""
    return TypeAdapter(kind)


def parse_record(text: str) -> Record:
    """One line of samples.jsonl as its type; a ValueError (pydantic's ValidationError is one) when it is
    not JSON, a field has the wrong type or is missing, or the record was never graded."""
    record = _adapter(_LINE).validate_json(text)
    if record.correct is None or (isinstance(record, SearchRecord) and not record.points):
        raise ValueError("an ungraded record")
    return record


# ---------------------------------------------------------------------------------------------- summary

_OMITTED_WHEN_NONE = {
    "compute",
    "mean_prefill_tokens",
    "mean_reward_tokens",
    "maj@k",
    "pass@k",
    "trajectories",
    "draw",
    "strict_in_control",
    "mean_tries",
    "unfit",
    "cut_answers",
}
"""Row fields only some methods have (search compute, voting, per-sample bounds, redraws): left out of the
JSON when absent, so summaries written before them read and compare alike."""


@dataclass(kw_only=True)
class Compute:
    """Tokens per problem (over all its samples): generated and prompt tokens processed, by this run (a
    shared sweep's branches generate only after they fork off) and had each setting run alone."""

    __pydantic_config__ = _STRICT
    generated: float
    generated_alone: float
    prompt: float
    prompt_alone: float

    @classmethod
    def of(cls, records: list, problems: int) -> Compute | None:
        counts = [r.compute for r in records]
        if not counts or any(c is None for c in counts) or not problems:
            return None
        names = [f.name for f in fields(cls)]
        return cls(**{name: sum(c[k] for c in counts) / problems for k, name in enumerate(names)})

    @classmethod
    def total(cls, parts: list[Compute | None]) -> Compute | None:
        """A run's compute per problem: its settings' summed (None unless every part has one)."""
        if not parts or any(p is None for p in parts):
            return None
        return cls(**{f.name: sum(getattr(p, f.name) for p in parts) for f in fields(cls)})


@dataclass(kw_only=True)
class SummaryRow:
    """One setting's point: accuracy with its interval, thinking tokens, whether it kept its bounds."""

    __pydantic_config__ = _STRICT
    method: str
    setting: str
    problems: int | None = None
    samples: int | None = None
    complete: bool = True
    """Every current problem done: only complete rows enter Control / Scaling / Performance."""
    reference: bool = False
    """A yardstick (class-conditional `default`), not a point of its method's curve."""
    accuracy: Undefined
    ci_low: Interval = None
    ci_high: Interval = None
    """The interval (null in the file: undefined, no sample counted; absent: a summary from before intervals)."""
    mean_thinking_tokens: Undefined
    mean_prefill_tokens: float | None = None
    mean_reward_tokens: float | None = None
    mean_total_tokens: float | None = None
    in_control: bool | None = None
    """The paper's Eq. 1 for this setting: its mean thinking tokens lie within the requested bounds."""
    strict_in_control: bool | None = None
    """Strict control: every sample's thinking lies within the bounds (None where no per-sample bound applies)."""
    relative: str | None = None
    maj_at_k: Annotated[dict[int, float] | None, Field(alias="maj@k")] = None
    pass_at_k: Annotated[dict[int, float] | None, Field(alias="pass@k")] = None
    trajectories: int | None = None
    """Search rows: n, the trajectories this point answers from."""
    draw: int | None = None
    """Search rows: N, the trajectories drawn (n = 1, 2, 4 ... of one draw of N)."""
    mean_tries: float | None = None
    """Rejection sampling: draws per sample, averaged (the fitting draw and those rejected before it)."""
    unfit: int | None = None
    """Rejection sampling: samples that never fit within the bound on tries; left out of accuracy and thinking."""
    cut_answers: int | None = None
    """Samples (search rows: trajectories this point answers from) whose answer a token limit stopped before it
    ended (`answer_cut`); None in summaries written before it was counted."""
    compute: Compute | None = None
    """Sample-based rows: tokens per problem this run spent on the setting, with the sweep shared and had it
    run alone (None where a record predates the counters)."""

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            name = {"maj_at_k": "maj@k", "pass_at_k": "pass@k"}.get(f.name, f.name)
            value = getattr(self, f.name)
            if value is None and name in _OMITTED_WHEN_NONE:
                continue
            out[name] = dict(value) if isinstance(value, dict) else asdict(value) if name == "compute" else value
        return out

    def x(self, axis: str = "mean_thinking_tokens") -> float:
        """The row's position on a plot's x-axis (`mean_total_tokens`: everything processed), where it has one."""
        value = getattr(self, axis, None)
        return self.mean_thinking_tokens if value is None else value


@dataclass(kw_only=True)
class MethodMetrics:
    """The paper's metrics of one method over its complete settings (None where they are undefined)."""

    __pydantic_config__ = _STRICT
    control: float | None = None
    """The paper's Control (Eq. 1): % of settings whose mean thinking tokens kept the bounds."""
    strict_control: float | None = None
    """% of settings whose every sample kept the bounds."""
    scaling_per_1k_tokens: float | None = None
    scaling_per_doubling: float | None = None
    performance: float | None = None


@dataclass(kw_only=True)
class BenchmarkSummary:
    __pydantic_config__ = _STRICT
    problems: int | None = None
    settings: list[SummaryRow]
    methods: dict[str, MethodMetrics]
    compute: Compute | None = None
    """The sample-based rows' compute summed: the run's tokens per problem, shared and alone."""


@dataclass(kw_only=True)
class Summary:
    """summary.json: per benchmark one row per setting and the metrics per method, with the context
    (configuration hash) its samples share, the configuration, the notes that define each number, and
    how many lines of samples.jsonl it did not use."""

    __pydantic_config__ = _STRICT
    model: str | None = None
    context: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    benchmarks: dict[str, BenchmarkSummary]
    notes: list[str] = field(default_factory=list)
    unused_samples: int = 0
    unreadable_lines: int = 0

    def to_json(self) -> dict:
        out = asdict(self)
        out["benchmarks"] = {
            name: {
                "problems": bench.problems,
                "settings": [row.to_json() for row in bench.settings],
                "methods": {method: asdict(m) for method, m in bench.methods.items()},
                **({"compute": asdict(bench.compute)} if bench.compute is not None else {}),
            }
            for name, bench in self.benchmarks.items()
        }
        return out

    def to_text(self) -> str:
        return json.dumps(finite(self.to_json()), indent=2, default=str, allow_nan=False) + "\n"

    def methods(self) -> list[str]:
        """Every method with a row, in the order of the tables."""
        return list(dict.fromkeys(m for bench in self.benchmarks.values() for m in bench.methods))


def parse_summary(text: str) -> Summary:
    """summary.json as its type; a ValueError when a field has the wrong type or a needed one is missing."""
    return _adapter(Summary).validate_json(text)
