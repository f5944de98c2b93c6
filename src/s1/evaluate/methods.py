"""The methods of the paper's Table 3 and §6, one object each: which settings it runs (each setting one
point on a curve), how it runs (sample by sample, or a search over many trajectories per problem) and,
for a search, how it picks the answer.

- budget forcing: caps (`max_thinking_tokens`) and/or "Wait" counts (`num_ignore`);
- token-, step- and class-conditional control: the budget is only stated in the prompt, alone or
  enforced by budget forcing as well;
- rejection sampling: sample until the thinking fits the budget (unbounded by default, as the paper; `max_tries`);
- parallel scaling (§6): majority voting, best-of-N and weighted majority over N trajectories, and
  REBASE tree search, each over budget-forced trajectories (`SearchSpec`; run by `search_runner`).
A setting's `bounds` are the thinking lengths it asks for; Control counts how often they were kept.
Class-conditional settings ask for no length but for "shorter" or "longer" than the model's default, so
each class-conditional method also runs a `default` setting (the bare question) as their reference.

Labels are canonical: the same setting always gets the same label, whatever else the sweep holds,
because labels name settings across resumed and extended runs; a setting's `spec()` is part of every
sample's identity, so neither may change for a setting that exists. (One concern, the methods, at
about 400 lines.)

One concern, so one module past 400 lines: the paper's methods as objects (settings, running, picking).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.settings import setting
from s1.evaluate.metrics import best_of, majority_vote, weighted_vote


@dataclass(frozen=True)
class SearchSpec:
    """How a parallel or tree-search setting draws trajectories and picks an answer; part of the
    setting's identity, so only what its method uses is set (the rest stays at the defaults). The field
    names are stored in run directories; users know them by their declared names (`reward_aggregate`)."""

    trajectories: int
    """N samples (majority, best-of-N, weighted majority) or the width W (REBASE): --samples and --width."""
    reward: str | None = setting(
        None,
        help="best_of_n, weighted_majority, rebase: a reward model directory, an http:// URL of a /pooling server "
        "(vLLM, s1 serve --reward-model) or module:function.",
        name="reward_model",
    )
    reward_kind: str = setting(
        "auto",
        help="How a reward model directory is read: auto (from its architecture), prm (token classification at "
        "each step tag), shepherd (good-token probability) or orm.",
    )
    step_tag: str | None = setting(
        None,
        help="Text the reward model reads after each step (default: <extra_0> for prm, ки for shepherd).",
        escaped=True,
    )
    aggregate: str = setting(
        "last", help="A trajectory's score from its steps' scores: last, min, mean or prod.", name="reward_aggregate"
    )
    delimiter: str = setting("\n\n", help="REBASE: a step ends at this text.", name="step_delimiter", escaped=True)
    max_step_tokens: int = setting(256, help="REBASE: a step ends after this many tokens at most.", ge=1)
    max_depth: int = setting(32, help="REBASE: steps before live nodes run to their end.", ge=1)
    softmax_temperature: float = setting(
        0.2,
        help="REBASE: softmax temperature over node scores when splitting the width.",
        gt=0,
        name="rebase_temperature",
    )
    vote: str = setting(
        "majority",
        help="REBASE's answer: majority (the paper's Figure 7) or weighted (by reward) over its finished trajectories.",
        name="rebase_vote",
    )


CLASS_PROMPTS = {
    "short": "Answer after a short amount of thinking. Do not spend excessive time double-checking your work.",
    "long": "Answer after a long amount of thinking. If you feel like you are finished early, spend the extra time "
    "trying to double-check your work until you are absolutely sure that you have the correct answer.",
}
"""The paper's class-conditional prompts, verbatim (s1 §4.1, Appendix; docs/design.md "Methods"), appended after
two newlines (`Setting.prompt`)."""


@dataclass(frozen=True)
class Setting:
    method: str
    label: str
    forcing: BudgetForcing
    instruction: str | None = None
    """Appended to the question for the conditional methods."""
    bounds: tuple[int, int | None] | None = None
    """(min, max) thinking tokens requested; None when the setting asks for no length (class-conditional)."""
    reject_over: int | None = None
    """Rejection sampling: a sample thinking more than this many tokens is drawn again."""
    max_tries: int | None = None
    """Rejection sampling: draws per sample before giving up (None: until one fits, as the paper did); a sample
    that never fit is recorded with `fits` false and left out of accuracy."""
    relative: str | None = None
    """Class-conditional: "below" or "above" the method's default setting's mean thinking."""
    reference: bool = False
    """The bare-question default of a class-conditional method: a yardstick, not a point of its curve."""
    search: SearchSpec | None = None
    """Parallel and tree-search methods: how trajectories are drawn and combined."""

    def spec(self) -> dict:
        """Everything that defines the setting, as JSON: stored with each sample, rebuilt by `from_spec`."""
        out = asdict(self)
        out["forcing"]["extensions"] = list(self.forcing.extensions)
        out["bounds"] = list(self.bounds) if self.bounds is not None else None
        if not self.forcing.thinking_grace_tokens:  # without a grace, settings keep the identity they had before it
            del out["forcing"]["thinking_grace_tokens"]
        if self.search is None:
            del out["search"]  # settings of the other methods keep the identity they had before search existed
        return out

    @classmethod
    def from_spec(cls, spec: dict) -> Setting:
        if spec.get("method") not in METHODS:
            raise UserError(f"Unknown method {spec.get('method')!r} in a setting's specification.")
        fields = dict(spec)
        fields["forcing"] = BudgetForcing(**{**spec["forcing"], "extensions": tuple(spec["forcing"]["extensions"])})
        fields["bounds"] = tuple(spec["bounds"]) if spec.get("bounds") is not None else None
        fields["search"] = SearchSpec(**spec["search"]) if spec.get("search") else None
        return cls(**fields)

    @property
    def kind(self) -> Method:
        """The method object: how this setting runs and picks its answer."""
        return METHODS[self.method]

    def prompt(self, question: str) -> str:
        return f"{question}\n\n{self.instruction}" if self.instruction else question

    def in_bounds(self, thinking_tokens: int) -> bool:
        if self.bounds is None:
            return True
        low, high = self.bounds
        return thinking_tokens >= low and (high is None or thinking_tokens <= high)


@dataclass(frozen=True)
class Grid:
    """What one sweep varies; each method makes its settings from it."""

    base: BudgetForcing
    """The run's forcing defaults (minimum, extensions, answer prefix and budget)."""
    caps: list[int | None]
    num_ignores: list[int]
    steps: list[int]
    """Step budgets of the step-conditional methods."""
    tokens_per_step: int
    search: SearchSpec
    """The parallel and tree settings; `trajectories` is N."""
    widths: list[int]
    """REBASE's widths."""
    max_tries: int | None
    """Rejection sampling's draws per sample (None: until one fits)."""

    @property
    def budgets(self) -> list[int]:
        return [c for c in self.caps if c is not None]


class Method:
    """One method of the sweep. Subclasses say which settings it runs; a search method also draws its
    trajectories and picks one answer from them."""

    name: str
    search = False
    """Its unit is a problem (many trajectories, one chosen answer; run by `search_runner`), not a sample
    (run by `runner`)."""
    parallel = False
    """N independent trajectories: methods with the same N and forcing share one draw per problem, and
    the first n of them answer for n = 1, 2, 4 ... as well."""
    needs_budget = False
    """It needs token budgets (--max-thinking-tokens)."""
    needs_reward = False
    thinking = True
    """Its prompts open a thinking block (False: the chat template's plain answer, docs/design.md)."""
    steps_of_thinking = False
    """It searches over steps of thinking (REBASE): a format that opens no thinking leaves it nothing to split."""

    def settings(self, grid: Grid) -> list[Setting]:
        raise NotImplementedError

    def temperature(self, configured: float) -> float:
        """The temperature its samples are drawn at."""
        return configured

    def check(self, search: SearchSpec, widths: list[int]) -> None:
        """Values only this method reads, checked before anything is loaded."""


class BudgetForcingMethod(Method):
    name = "budget_forcing"

    def settings(self, grid: Grid) -> list[Setting]:
        out = []
        for cap in grid.caps:
            for k in grid.num_ignores:
                forcing = replace(grid.base, max_thinking_tokens=cap, num_ignore=k)
                label = f"cap={'none' if cap is None else cap} wait={k}"  # cap 0 (no thinking) is not no cap
                if "" in grid.base.extensions:  # Table 4's "without string": ends suppressed, nothing appended
                    label += " without string" if set(grid.base.extensions) == {""} else " with empty extension"
                out.append(Setting(self.name, label, forcing, bounds=(grid.base.min_thinking_tokens, cap)))
        return out


class NoThinking(Method):
    """A plain chat answer with no thinking block opened: Table 1's instruct-model rows and the paper's
    baselines without budget forcing. One setting; it asks for no thinking length, so Control skips it."""

    name = "no_thinking"
    thinking = False

    def settings(self, grid: Grid) -> list[Setting]:
        forcing = replace(
            grid.base, max_thinking_tokens=None, min_thinking_tokens=0, num_ignore=0, thinking_grace_tokens=0
        )
        return [Setting(self.name, "no thinking", forcing)]


class TokenConditional(Method):
    """ "Think for up to N tokens." in the prompt; with `forced`, budget forcing holds N as well."""

    needs_budget = True

    def __init__(self, forced: bool):
        self.name, self.forced = "token_conditional" + ("+bf" if forced else ""), forced

    def settings(self, grid: Grid) -> list[Setting]:
        out = []
        for n in grid.budgets:
            forcing = replace(grid.base, max_thinking_tokens=n if self.forced else None)
            out.append(Setting(self.name, f"tokens={n}", forcing, f"Think for up to {n} tokens.", (0, n)))
        return out


class StepConditional(Method):
    """ "Think for up to N steps.", checked (and with `forced` enforced) as N x tokens per step."""

    needs_budget = True

    def __init__(self, forced: bool):
        self.name, self.forced = "step_conditional" + ("+bf" if forced else ""), forced

    def settings(self, grid: Grid) -> list[Setting]:
        out = []
        for s in grid.steps:
            n = s * grid.tokens_per_step
            forcing = replace(grid.base, max_thinking_tokens=n if self.forced else None)
            out.append(Setting(self.name, f"steps={s}", forcing, f"Think for up to {s} steps.", (0, n)))
        return out


class ClassConditional(Method):
    """A short and a long thinking prompt, and the bare question as their yardstick; with `forced`, the
    smallest and largest cap enforce them."""

    needs_budget = True

    def __init__(self, forced: bool):
        self.name, self.forced = "class_conditional" + ("+bf" if forced else ""), forced

    def settings(self, grid: Grid) -> list[Setting]:
        out = [Setting(self.name, "default", replace(grid.base, max_thinking_tokens=None), reference=True)]
        for name, cap, side in (("short", min(grid.budgets), "below"), ("long", max(grid.budgets), "above")):
            forcing = replace(grid.base, max_thinking_tokens=cap if self.forced else None)
            label = f"{name} cap={cap}" if self.forced else name
            out.append(Setting(self.name, label, forcing, CLASS_PROMPTS[name], relative=side))
        return out


class RejectionSampling(Method):
    """Sample until the thinking fits the budget, as the paper did (655 tries on average at 3,500 tokens), or
    at most `max_tries` draws when bounded (the bound is part of the setting: it changes what the samples
    are). A sample that never fit is recorded as such and left out of accuracy, never silently kept."""

    name = "rejection_sampling"
    needs_budget = True

    def settings(self, grid: Grid) -> list[Setting]:
        out = []
        for n in grid.budgets:
            # One token over the budget is enough to know a sample does not fit: stop it there.
            # (no grace either: the cap is where a draw is known not to fit, not where thinking should end)
            forcing = replace(
                grid.base, max_thinking_tokens=n + 1, min_thinking_tokens=0, num_ignore=0, thinking_grace_tokens=0
            )
            out.append(
                Setting(self.name, f"tokens={n}", forcing, None, (0, n), reject_over=n, max_tries=grid.max_tries)
            )
        return out

    def temperature(self, configured: float) -> float:
        return configured or 1.0  # redrawing needs randomness: at greedy settings it samples at temperature 1


class SearchMethod(Method):
    """Many budget-forced trajectories per problem, one answer chosen from them."""

    search = True
    prefix = "n"
    """Its labels' size: n=N trajectories, or width=W."""

    def temperature(self, configured: float) -> float:
        return configured or 1.0  # greedy trajectories would all be the same

    def spec(self, grid: Grid) -> tuple[SearchSpec, list[int]]:
        """The search values this method reads (only those: the rest stays at the defaults, out of its
        identity) and the sizes it runs."""
        raise NotImplementedError

    def settings(self, grid: Grid) -> list[Setting]:
        spec, sizes = self.spec(grid)
        out = []
        for size in sizes:
            for cap in grid.caps:
                for k in grid.num_ignores:
                    forcing = replace(grid.base, max_thinking_tokens=cap, num_ignore=k)
                    label = f"{self.prefix}={size}"
                    if cap is not None or k:
                        label += f" cap={'none' if cap is None else cap} wait={k}"
                    out.append(Setting(self.name, label, forcing, search=replace(spec, trajectories=size)))
        return out

    def draw(self, engine, request, question: str, setting: Setting, sampling, batch_size: int, reward):
        """Run the search for one problem (`search.SearchResult`); `sampling(node, child)` seeds each draw."""
        raise NotImplementedError

    def pick(self, setting: Setting, classes: list[int | None], rewards: list[float | None]) -> int | None:
        """The chosen trajectory, from its answers' equivalence classes and rewards."""
        raise NotImplementedError

    def sizes(self, n: int) -> list[int]:
        """The n whose answers a record of n trajectories gives."""
        return [n]

    def label(self, setting: Setting, n: int) -> str:
        """The label of the point answered from the first n trajectories."""
        return setting.label


class Parallel(SearchMethod):
    """N independent trajectories and a rule to pick one: majority (most common equivalent answer),
    best-of-N (highest reward), weighted majority (the class with the largest summed reward).

    Each also runs without thinking (`+no_thinking`: the chat template's plain answer, no thinking block
    opened), the paper's Figure 4b baseline: an instruct model's majority vote over N plain answers. Those
    settings vary only N; budgets and Wait counts have nothing to act on and are not part of them."""

    parallel = True

    def __init__(self, name: str, rule, needs_reward: bool, thinking: bool = True):
        self.name = name if thinking else f"{name}+no_thinking"
        self.rule, self.needs_reward, self.thinking = rule, needs_reward, thinking

    def settings(self, grid: Grid) -> list[Setting]:
        if self.thinking:
            return super().settings(grid)
        spec, sizes = self.spec(grid)
        # a plain answer has no thinking to cap, extend or grace: none of those may name or split its draws
        forcing = replace(
            grid.base, max_thinking_tokens=None, min_thinking_tokens=0, num_ignore=0, thinking_grace_tokens=0
        )
        return [
            Setting(self.name, f"n={size} no thinking", forcing, search=replace(spec, trajectories=size))
            for size in sizes
        ]

    def spec(self, grid: Grid) -> tuple[SearchSpec, list[int]]:
        # These methods never read REBASE's vote; it stays at the value it had when their identities were made
        # (the field's default was "weighted" before REBASE defaulted to the paper's majority vote).
        spec = SearchSpec(grid.search.trajectories, vote="weighted")
        if self.needs_reward:
            s = grid.search
            spec = replace(spec, reward=s.reward, reward_kind=s.reward_kind, step_tag=s.step_tag, aggregate=s.aggregate)
        return spec, [grid.search.trajectories]

    def draw(self, engine, request, question: str, setting: Setting, sampling, batch_size: int, reward):
        from s1.evaluate.search import sample

        spec = setting.search
        samplings = [sampling(None, j) for j in range(spec.trajectories)]
        return sample(engine, request, question, samplings, batch_size, reward, spec.aggregate, spec.delimiter)

    def pick(self, setting: Setting, classes: list[int | None], rewards: list[float | None]) -> int | None:
        return self.rule(classes, rewards)

    def sizes(self, n: int) -> list[int]:
        """1, 2, 4 ... below n, then n."""
        out, k = [], 1
        while k < n:
            out.append(k)
            k *= 2
        return out + [n]

    def label(self, setting: Setting, n: int) -> str:
        return setting.label.replace(f"n={setting.search.trajectories}", f"n={n}", 1)


class Rebase(SearchMethod):
    """REBASE tree search (Wu et al., 2024) over reasoning steps; the answer by plain majority over its finished
    trajectories, as the paper's Figure 7, or weighted by reward (`SearchSpec.vote`). The vote is part of the
    setting's identity: a directory written when weighted was the default resumes with --rebase-vote weighted."""

    name = "rebase"
    prefix = "width"
    needs_reward = True
    steps_of_thinking = True

    def spec(self, grid: Grid) -> tuple[SearchSpec, list[int]]:
        return replace(grid.search, trajectories=0), grid.widths

    def check(self, search: SearchSpec, widths: list[int]) -> None:
        if search.vote not in ("weighted", "majority"):
            raise UserError(f"--rebase-vote must be weighted or majority, got {search.vote!r}.")
        for width in widths:
            self._params(replace(search, trajectories=width))

    @staticmethod
    def _params(spec: SearchSpec):
        from s1.engines.base import StepRule
        from s1.evaluate.search import RebaseSettings  # imports torch: only when REBASE runs

        step = StepRule(spec.delimiter, spec.max_step_tokens)
        return RebaseSettings(spec.trajectories, step, spec.max_depth, spec.softmax_temperature, spec.aggregate)

    def draw(self, engine, request, question: str, setting: Setting, sampling, batch_size: int, reward):
        from s1.evaluate.search import rebase

        return rebase(engine, request, question, reward, self._params(setting.search), sampling, batch_size)

    def pick(self, setting: Setting, classes: list[int | None], rewards: list[float | None]) -> int | None:
        return weighted_vote(classes, rewards) if setting.search.vote == "weighted" else majority_vote(classes)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        BudgetForcingMethod(),
        NoThinking(),
        TokenConditional(forced=False),
        TokenConditional(forced=True),
        StepConditional(forced=False),
        StepConditional(forced=True),
        ClassConditional(forced=False),
        ClassConditional(forced=True),
        RejectionSampling(),
        *(
            Parallel(name, rule, needs_reward, thinking)
            for thinking in (True, False)
            for name, rule, needs_reward in (
                ("majority", lambda classes, rewards: majority_vote(classes), False),
                ("best_of_n", lambda classes, rewards: best_of(rewards), True),
                ("weighted_majority", weighted_vote, True),
            )
        ),
        Rebase(),
    )
}
"""Every method by name, in the order of the tables."""


def _graced(s: Setting) -> Setting:
    """A setting whose forcing has a thinking grace names it in its label (settings of one directory with and
    without a grace must not share a label), and, where its cap is enforced, is held to cap + grace by Control:
    the grace lets thinking run that far past the cap, by design."""
    grace = s.forcing.thinking_grace_tokens
    if not grace:
        return s
    bounds = s.bounds
    if bounds is not None and bounds[1] is not None and s.forcing.max_thinking_tokens is not None:
        bounds = (bounds[0], bounds[1] + grace)
    return replace(s, label=f"{s.label} grace={grace}", bounds=bounds)


def build_settings(
    methods: list[str],
    base: BudgetForcing,
    caps: list[int | None],
    num_ignores: list[int],
    steps: list[int] | None = None,
    tokens_per_step: int = 100,
    search: SearchSpec | None = None,
    widths: list[int] | None = None,
    max_tries: int | None = None,
) -> list[Setting]:
    """Every (method, setting) the sweep runs, in a stable order. `search` holds the parallel and tree
    settings (its `trajectories` is N); `widths` REBASE's widths; `max_tries` rejection sampling's draws."""
    unknown = [m for m in methods if m not in METHODS]
    bare = [METHODS[b] for m in unknown if (b := m.removesuffix("+no_thinking")) != m and b in METHODS]
    if bare:  # a thinking method asked for without thinking: say why there is no such form
        why = "searches over steps of thinking" if bare[0].steps_of_thinking else "sets how long the model thinks"
        raise UserError(
            f"{bare[0].name} {why}, so it has no form without thinking; use no_thinking (maj@k with --samples) or "
            "majority+no_thinking (best_of_n+no_thinking, weighted_majority+no_thinking) for answers without it."
        )
    if unknown:
        raise UserError(f"Unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    budgets = [c for c in caps if c is not None]
    needs_budget = [m for m in methods if METHODS[m].needs_budget]
    if needs_budget and not budgets:
        raise UserError(
            f"Method {needs_budget[0]} needs token budgets; pass --max-thinking-tokens, e.g. 512,1024,2048."
        )
    if tokens_per_step < 1:
        raise UserError(f"--tokens-per-step must be at least 1, got {tokens_per_step}.")
    if steps is not None and any(s < 1 for s in steps):
        raise UserError(f"--steps takes positive step budgets, got {','.join(map(str, steps))}.")
    grid = Grid(
        base=base,
        caps=caps,
        num_ignores=num_ignores,
        steps=steps or [max(1, b // tokens_per_step) for b in budgets],
        tokens_per_step=tokens_per_step,
        search=search or SearchSpec(1),
        widths=widths or [16],
        max_tries=max_tries,
    )
    settings = [_graced(s) for m in methods for s in METHODS[m].settings(grid)]
    labels = [(s.method, s.label) for s in settings]
    duplicate = next((pair for pair in labels if labels.count(pair) > 1), None)
    if duplicate:
        raise UserError(f"The sweep lists {duplicate[0]} {duplicate[1]} twice; give each budget once.")
    return settings
