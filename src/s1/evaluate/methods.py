"""The methods of the paper's Table 3 as lists of settings: each setting is one point on a curve.

- budget forcing: caps (`max_thinking_tokens`) and/or "Wait" counts (`num_ignore`);
- token-, step- and class-conditional control: the budget is only stated in the prompt, alone or
  enforced by budget forcing as well;
- rejection sampling: sample until the thinking fits the budget (bounded tries);
- parallel scaling (§6): majority voting, best-of-N and weighted majority over N trajectories, and
  REBASE tree search, each over budget-forced trajectories (`SearchSpec`; run by `search`).
A setting's `bounds` are the thinking lengths it asks for; Control counts how often they were kept.
Class-conditional settings ask for no length but for "shorter" or "longer" than the model's default, so
each class-conditional method also runs a `default` setting (the bare question) as their reference.

Labels are canonical: the same setting always gets the same label, whatever else the sweep holds,
because labels name settings across resumed and extended runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.settings import setting

METHODS = (
    "budget_forcing",
    "token_conditional",
    "token_conditional+bf",
    "step_conditional",
    "step_conditional+bf",
    "class_conditional",
    "class_conditional+bf",
    "rejection_sampling",
    "majority",
    "best_of_n",
    "weighted_majority",
    "rebase",
)
PARALLEL = ("majority", "best_of_n", "weighted_majority")
"""N independent trajectories per problem, one answer chosen from them."""
SEARCH = PARALLEL + ("rebase",)
"""Methods whose unit is a problem (many trajectories, one chosen answer), not a sample."""
NEEDS_REWARD = ("best_of_n", "weighted_majority", "rebase")


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
        "weighted",
        help="REBASE's answer: weighted (by reward) or plain majority over its finished trajectories.",
        name="rebase_vote",
    )


CLASS_PROMPTS = {
    "short": "Think briefly: keep your reasoning as short as possible before answering.",
    "long": "Think carefully and at length: reason as long as you need before answering.",
}


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
    """Rejection sampling: draws per sample before the last one is kept anyway."""
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
        if self.search is None:
            del out["search"]  # settings of the other methods keep the identity they had before search existed
        return out

    @classmethod
    def from_spec(cls, spec: dict) -> Setting:
        fields = dict(spec)
        fields["forcing"] = BudgetForcing(**{**spec["forcing"], "extensions": tuple(spec["forcing"]["extensions"])})
        fields["bounds"] = tuple(spec["bounds"]) if spec.get("bounds") is not None else None
        fields["search"] = SearchSpec(**spec["search"]) if spec.get("search") else None
        return cls(**fields)

    def prompt(self, question: str) -> str:
        return f"{question}\n\n{self.instruction}" if self.instruction else question

    def in_bounds(self, thinking_tokens: int) -> bool:
        if self.bounds is None:
            return True
        low, high = self.bounds
        return thinking_tokens >= low and (high is None or thinking_tokens <= high)


def build_settings(
    methods: list[str],
    base: BudgetForcing,
    caps: list[int | None],
    num_ignores: list[int],
    steps: list[int] | None = None,
    tokens_per_step: int = 100,
    search: SearchSpec | None = None,
    widths: list[int] | None = None,
) -> list[Setting]:
    """Every (method, setting) the sweep runs, in a stable order. `search` holds the parallel and tree
    settings (its `trajectories` is N); `widths` REBASE's widths."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"Unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    budgets = [c for c in caps if c is not None]
    needs_budget = [m for m in methods if m not in ("budget_forcing",) + SEARCH]
    if needs_budget and not budgets:
        raise UserError(
            f"Method {needs_budget[0]} needs token budgets; pass --max-thinking-tokens, e.g. 512,1024,2048."
        )
    if tokens_per_step < 1:
        raise UserError(f"--tokens-per-step must be at least 1, got {tokens_per_step}.")
    if steps is not None and any(s < 1 for s in steps):
        raise UserError(f"--steps takes positive step budgets, got {','.join(map(str, steps))}.")
    steps = steps or [max(1, b // tokens_per_step) for b in budgets]
    settings: list[Setting] = []
    search = search or SearchSpec(1)
    for method in methods:
        if method in SEARCH:
            settings += _search_settings(method, base, caps, num_ignores, search, widths or [16])
            continue
        conditional, _, forced = method.partition("+")
        if method == "budget_forcing":
            for cap in caps:
                for k in num_ignores:
                    forcing = replace(base, max_thinking_tokens=cap, num_ignore=k)
                    label = f"cap={cap if cap else 'none'} wait={k}"
                    settings.append(Setting(method, label, forcing, bounds=(base.min_thinking_tokens, cap)))
        elif conditional == "token_conditional":
            for n in budgets:
                forcing = replace(base, max_thinking_tokens=n if forced else None)
                settings.append(Setting(method, f"tokens={n}", forcing, f"Think for up to {n} tokens.", (0, n)))
        elif conditional == "step_conditional":
            for s in steps:
                n = s * tokens_per_step
                forcing = replace(base, max_thinking_tokens=n if forced else None)
                settings.append(Setting(method, f"steps={s}", forcing, f"Think for up to {s} steps.", (0, n)))
        elif conditional == "class_conditional":
            settings.append(Setting(method, "default", replace(base, max_thinking_tokens=None), reference=True))
            for name, cap, side in (("short", min(budgets), "below"), ("long", max(budgets), "above")):
                forcing = replace(base, max_thinking_tokens=cap if forced else None)
                label = f"{name} cap={cap}" if forced else name
                settings.append(Setting(method, label, forcing, CLASS_PROMPTS[name], relative=side))
        elif method == "rejection_sampling":
            for n in budgets:
                # One token over the budget is enough to know a sample does not fit: stop it there.
                forcing = replace(base, max_thinking_tokens=n + 1, min_thinking_tokens=0, num_ignore=0)
                settings.append(Setting(method, f"tokens={n}", forcing, None, (0, n), reject_over=n))
    labels = [(s.method, s.label) for s in settings]
    duplicate = next((pair for pair in labels if labels.count(pair) > 1), None)
    if duplicate:
        raise UserError(f"The sweep lists {duplicate[0]} {duplicate[1]} twice; give each budget once.")
    return settings


def _search_settings(
    method: str,
    base: BudgetForcing,
    caps: list[int | None],
    num_ignores: list[int],
    search: SearchSpec,
    widths: list[int],
) -> list[Setting]:
    """A parallel method's setting per (cap, Wait count) with N trajectories; REBASE's per width as well.
    Their trajectories are budget-forced like budget forcing's samples."""
    if method in PARALLEL:
        spec = SearchSpec(search.trajectories)
        if method != "majority":
            spec = replace(
                spec,
                reward=search.reward,
                reward_kind=search.reward_kind,
                step_tag=search.step_tag,
                aggregate=search.aggregate,
            )
        sizes = [search.trajectories]
    else:  # widths are checked with the other REBASE values (EvalConfig.check_search)
        spec, sizes = replace(search, trajectories=0), widths
    out = []
    for size in sizes:
        for cap in caps:
            for k in num_ignores:
                forcing = replace(base, max_thinking_tokens=cap, num_ignore=k)
                label = f"{'n' if method in PARALLEL else 'width'}={size}"
                if cap is not None or k:
                    label += f" cap={cap if cap else 'none'} wait={k}"
                out.append(Setting(method, label, forcing, search=replace(spec, trajectories=size)))
    return out
