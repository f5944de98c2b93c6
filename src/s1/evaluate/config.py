"""An evaluation's configuration: what to run (benchmarks, methods, settings) and what makes a sample's identity."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.formats import get_format
from s1.core.rundir import identity_hash
from s1.core.sampling import Sampling
from s1.core.settings import config_fields, declared
from s1.data.benchmarks import Problem, benchmark_problems
from s1.engines import ENGINES
from s1.evaluate.methods import METHODS, SearchSpec, Setting, build_settings

# Run-level fields that change what a sample is. With the setting's full specification, the problem's
# content hash and the sample index they make a sample's identity; the summary covers the settings of
# the directory whose samples share this context.
DTYPES = ("auto", "float32", "bfloat16", "float16")

EVAL_DEFAULTS = {"max_answer_tokens": None}
"""Where `s1 eval` differs from the declared (interactive) defaults: the answer may use what the context leaves
after the cap, as s1's evaluation did, so a long answer is not cut before its \\boxed{} (docs/design.md)."""

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


@dataclass
@config_fields(BudgetForcing, Sampling, SearchSpec, defaults=EVAL_DEFAULTS)
class EvalConfig:
    """What `s1 eval` runs. Besides the keys below, every setting declared on `BudgetForcing`, `Sampling` and
    `SearchSpec` is a key here, under its declared name and with its declared default (`config_fields`);
    the swept ones (`max_thinking_tokens`, `num_ignore`) as lists: one setting of the sweep per value."""

    benchmarks: list[str] = field(default_factory=lambda: ["aime24"])
    model: str = "smollm2"
    engine: str = "hf"
    format: str = "s1"
    device: str = "auto"
    dtype: str = "auto"
    """The model's precision (the paper evaluated in float32); part of a sample's identity unless auto."""
    methods: list[str] = field(default_factory=lambda: ["budget_forcing"])
    steps: list[int] | None = None
    tokens_per_step: int = 100
    samples: int = 1
    max_tries: int | None = None
    """Rejection sampling's draws per sample; None: until one fits (the paper's procedure)."""
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
    widths: list[int] = field(default_factory=lambda: [16])
    plot_tokens: str = "generated"
    share_sweep: bool = True
    """Settings that differ only in cap and Wait count share one trajectory per problem and sample
    (evaluate/sharing.py); the samples are the same either way, so it is not part of their identity."""

    def forcing(self) -> BudgetForcing:
        """The sweep's base: every forcing setting but the swept ones, which each setting of the sweep sets."""
        return BudgetForcing(
            **{d.field: getattr(self, d.name) for d in declared(BudgetForcing) if not d.sweep},
            max_thinking_tokens=None,
        )

    def context(self) -> dict:
        """Numbers as floats, so temperature 0 from Python and 0.0 from the command line are one context."""
        values = {name: getattr(self, name) for name in CONTEXT_FIELDS}
        if self.dtype != "auto":  # auto keeps the identities run directories were written with
            values["dtype"] = self.dtype
        values["temperature"], values["top_p"] = float(self.temperature), float(self.top_p)
        # sampling settings added later join the context only when set, so earlier run directories keep theirs
        values.update({k: float(v) if isinstance(v, float) else v for k, v in self.sampling().changed().items()})
        return values

    def sampling(self, temperature: float | None = None, seed: int | None = None) -> Sampling:
        """The run's sampling settings (every one declared on `Sampling`), at a method's temperature and a
        sample's seed where given."""
        values = {d.field: getattr(self, d.name) for d in declared(Sampling)}
        values["seed"] = seed if seed is not None else self.seed
        if temperature is not None:
            values["temperature"] = temperature
        return Sampling(**values)

    def settings(self) -> list[Setting]:
        """Every setting of the sweep; all run-level values are checked here, before anything is loaded."""
        if self.samples < 1:
            raise UserError(f"--samples must be at least 1, got {self.samples}.")
        if (
            self.samples > 1
            and self.temperature == 0
            and any(m not in METHODS or METHODS[m].temperature(0.0) == 0 for m in self.methods)
        ):
            raise UserError("--samples above 1 needs --temperature above 0; greedy samples would all be the same.")
        self.check_search()
        if self.max_tries is not None and self.max_tries < 1:
            raise UserError(f"--max-tries must be at least 1, got {self.max_tries}.")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.ids is not None and not self.ids:
            raise UserError("--ids names no id; give comma-separated problem ids such as 60,71.")
        if not self.methods:
            raise UserError("--method names no method; choose from " + ", ".join(METHODS) + ".")
        self.sampling()
        if not get_format(self.format).thinks:
            stepped = [m for m in self.methods if m in METHODS and METHODS[m].steps_of_thinking]
            if stepped:
                raise UserError(
                    f"{stepped[0]} searches over steps of thinking and --format {self.format} opens no thinking; "
                    "use a format with thinking, or majority+no_thinking for answers without it."
                )
        if self.dtype not in DTYPES:
            raise UserError(f"Unknown dtype {self.dtype!r}; use {', '.join(DTYPES)}.", "dtype", self.dtype)
        if self.engine not in ENGINES:
            raise UserError(f"Unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}.")
        if self.engine == "remote" and not self.base_urls:
            raise UserError("--engine remote needs --base-url URL of an OpenAI-compatible server.")
        for cap in self.max_thinking_tokens:
            BudgetForcing(max_thinking_tokens=cap, min_thinking_tokens=self.min_thinking_tokens)
        for k in self.num_ignore:
            BudgetForcing(num_ignore=k)
        return build_settings(
            self.methods,
            self.forcing(),
            self.max_thinking_tokens,
            self.num_ignore,
            self.steps,
            self.tokens_per_step,
            self.search_spec(),
            self.widths,
            self.max_tries,
        )

    def search_spec(self) -> SearchSpec:
        """The search settings; a reward model directory by its absolute path, so a run resumed from
        elsewhere finds its samples (and another model at the same relative path does not)."""
        reward = self.reward_model
        if reward and not reward.startswith(("http://", "https://")) and Path(reward).expanduser().is_dir():
            reward = str(Path(reward).expanduser().resolve())
        values = {d.field: getattr(self, d.name) for d in declared(SearchSpec)}
        values["softmax_temperature"] = float(values["softmax_temperature"])
        return SearchSpec(self.samples, **{**values, "reward": reward})

    def check_search(self) -> None:
        """The parallel and tree-search values, checked before anything loads."""
        from s1.evaluate.rewards import AGGREGATES

        methods = [METHODS[m] for m in self.methods if m in METHODS]  # an unknown name is refused with the rest
        needs = [m.name for m in methods if m.needs_reward]
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
        for method in methods:
            method.check(self.search_spec(), self.widths)

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
