"""Parallel scaling (paper §6, Figure 7): many trajectories per problem, and REBASE tree search.

Both run on any engine's `generate`; the in-process engines (transformers, llama.cpp) also pause a
trajectory after a step (`Request.step`) and continue it (`Request.resume`), which is what a tree needs.
The prompt is processed once, by a root request that pauses before its first token: every trajectory
then continues from it, and on the transformers engine each child forks its parent's cache and logits
(`engines.hf.PausedCaches`), so a node costs its own new tokens only. Budget forcing applies to every
trajectory as to one: a node's `ForcingState` travels with it.

REBASE (Wu et al., 2024; README.md "Parallel and tree search"): start with `width` children of the root;
at each depth a process reward model scores every live node's last step, trajectories that finished
leave the width, and the remaining width is split over live nodes in proportion to softmax(score / T)
(`allocate`), each node expanded by that many sampled next steps. It stops when `width` trajectories
have finished; at the depth limit the live nodes run to their end.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from s1.core.errors import UserError
from s1.core.sampling import Sampling
from s1.engines.base import Completion, Request, StepRule
from s1.engines.registry import spec_of
from s1.evaluate.records import Trajectory
from s1.evaluate.rewards import RewardModel, aggregate, split_steps


def allocate(scores: list[float], budget: int, temperature: float) -> list[int]:
    """Children per live node: `budget` split in proportion to softmax(score / temperature), rounded by
    largest remainder (ties to the earlier node) so the counts sum to the budget exactly."""
    if budget <= 0 or not scores:
        return [0] * len(scores)
    if temperature <= 0:
        raise UserError(f"The REBASE softmax temperature must be positive, got {temperature}.")
    values = [-math.inf if math.isnan(s) else s for s in scores]
    top = max(values)
    if top == -math.inf:  # nothing scored: split evenly
        weights = [1.0] * len(scores)
    elif top == math.inf:  # infinitely good nodes share the width
        weights = [1.0 if s == math.inf else 0.0 for s in values]
    else:
        weights = [math.exp((s - top) / temperature) for s in values]
    total = sum(weights)
    shares = [budget * w / total for w in weights]
    counts = [math.floor(s) for s in shares]
    for i in sorted(range(len(scores)), key=lambda i: (counts[i] - shares[i], i))[: budget - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass
class SearchResult:
    trajectories: list[Trajectory]
    generated_tokens: int
    """Every generated token of every trajectory and node, forced ones included."""
    prefill_tokens: int
    """Prompt tokens the engine actually processed (what forked or kept prefixes saved is not counted)."""
    reward_tokens: int = 0
    root_prefill: int = 0
    """The prompt processed once for every trajectory (0 where each trajectory processes its own)."""
    nodes: list[dict] = field(default_factory=list)
    """REBASE's tree: id, parent, depth, step text, tokens, score, children given, finished."""


def _in_process(engine) -> bool:
    """Engines that keep a paused trajectory's cache (the others resend prompt and path each round)."""
    return spec_of(engine).forks


def _affinity() -> str:
    """One search's key: its requests go to one remote server (`Request.affinity`)."""
    return uuid.uuid4().hex


def _forget(engine) -> None:
    """The search is over: nothing continues its paused trajectories, so the engine may drop their caches."""
    if _in_process(engine):
        engine.forget_paused()


def _root(engine, request: Request) -> Completion:
    """Process the prompt once: a request that pauses before its first token."""
    return engine.generate([replace(request, step=StepRule(max_tokens=0))], batch_size=1)[0]


def _score(
    reward: RewardModel | None, question: str, texts: list[tuple[str, str]], how: str, delimiter: str
) -> tuple[list, list[int]]:
    """(thinking, answer) texts -> one reward each (None without a reward model), and the tokens each scored."""
    if reward is None or not texts:
        return [None] * len(texts), [0] * len(texts)
    scored = reward.score([(question, split_steps(thinking, answer, delimiter)) for thinking, answer in texts])
    return [aggregate(s.steps, how) for s in scored], [s.tokens for s in scored]


def sample(
    engine,
    request: Request,
    question: str,
    samplings: list[Sampling],
    batch_size: int = 8,
    reward: RewardModel | None = None,
    how: str = "last",
    delimiter: str = "\n\n",
) -> SearchResult:
    """len(samplings) independent trajectories of one prompt (majority voting, best-of-N), the prompt
    processed once where the engine can continue a paused trajectory; `delimiter` splits a solution
    into the steps the reward model scores."""
    root_prefill = 0
    request = replace(request, affinity=_affinity())
    try:
        if _in_process(engine):
            root = _root(engine, request)
            root_prefill = root.prompt_tokens_processed
            requests = [replace(request, resume=root.state, sampling=s) for s in samplings]
        else:
            requests = [replace(request, sampling=s) for s in samplings]
        done = engine.generate(requests, batch_size=batch_size)
    finally:
        _forget(engine)
    rewards, reward_tokens = _score(reward, question, [(c.thinking, c.answer) for c in done], how, delimiter)
    trajectories = [
        Trajectory.of(c, engine.tokenizer, reward=r, prefill_tokens=c.prompt_tokens_processed, reward_tokens=tokens)
        for c, r, tokens in zip(done, rewards, reward_tokens)
    ]
    return SearchResult(
        trajectories,
        sum(t.generated_tokens for t in trajectories),
        root_prefill + sum(t.prefill_tokens for t in trajectories),
        sum(reward_tokens),
        root_prefill,
    )


@dataclass
class RebaseSettings:
    width: int = 16
    step: StepRule = field(default_factory=StepRule)
    max_depth: int = 32
    softmax_temperature: float = 0.2
    aggregate: str = "last"
    """How a finished trajectory's step scores become its weight in the vote (a live node is scored by
    its last step, as REBASE does)."""

    def __post_init__(self):
        if not isinstance(self.width, int) or self.width < 1:
            raise UserError(f"--width must be a positive whole number, got {self.width!r}.")
        if not isinstance(self.max_depth, int) or self.max_depth < 1:
            raise UserError(f"--max-depth must be a positive whole number, got {self.max_depth!r}.")
        if self.step.max_tokens < 1:
            raise UserError(f"--max-step-tokens must be at least 1, got {self.step.max_tokens}.")
        if not self.softmax_temperature > 0:
            raise UserError(f"--rebase-temperature must be positive, got {self.softmax_temperature}.")
        aggregate([0.0], self.aggregate)


def rebase(
    engine,
    request: Request,
    question: str,
    reward: RewardModel,
    settings: RebaseSettings,
    sampling: Callable[[int, int], Sampling],
    batch_size: int = 8,
) -> SearchResult:
    """REBASE over one prompt; `sampling(node id, child index)` gives each child its sampling (its seed)."""
    try:
        return _rebase(engine, replace(request, affinity=_affinity()), question, reward, settings, sampling, batch_size)
    finally:
        _forget(engine)


def _rebase(
    engine,
    request: Request,
    question: str,
    reward: RewardModel,
    settings: RebaseSettings,
    sampling: Callable[[int, int], Sampling],
    batch_size: int,
) -> SearchResult:
    # in process, a root processes the prompt once for every child; through a server, the children send it
    # (to one server, whose prefix cache holds it) and the root is only the tree's origin
    origin = _root(engine, request) if _in_process(engine) else None
    root, root_prefill = (origin.state, origin.prompt_tokens_processed) if origin is not None else (None, 0)
    prefill, generated, reward_tokens = root_prefill, 0, 0
    nodes = [
        {
            "id": 0,
            "parent": None,
            "depth": 0,
            "text": "",
            "tokens": 0,
            "score": None,
            "children": settings.width,
            "finished": False,
        }
    ]
    states, outputs, paths = {0: root}, {0: 0}, {0: []}
    finished: list[Trajectory] = []
    texts: list[tuple[str, str]] = []  # finished trajectories' (thinking, answer), for their final scores
    frontier, counts, depth = [0], [settings.width], 0
    while frontier:
        depth += 1
        last = depth >= settings.max_depth
        asks = [(parent, j) for parent, c in zip(frontier, counts) for j in range(c)]
        done = engine.generate(
            [
                replace(request, resume=states[p], step=None if last else settings.step, sampling=sampling(p, j))
                for p, j in asks
            ],
            batch_size=batch_size,
        )
        live = []
        for (parent, _), c in zip(asks, done):
            new = c.output_token_ids[outputs[parent] :]
            node = {
                "id": len(nodes),
                "parent": parent,
                "depth": depth,
                "text": engine.tokenizer.decode(new, skip_special_tokens=False),
                "tokens": len(new),
                "score": None,
                "children": 0,
                "finished": c.finish_reason != "step",
            }
            nodes.append(node)
            generated += len(new)
            prefill += c.prompt_tokens_processed
            if node["finished"]:
                finished.append(Trajectory.of(c, engine.tokenizer, node=node["id"]))
                texts.append((c.thinking, c.answer))
            else:
                states[node["id"]], outputs[node["id"]] = c.state, len(c.output_token_ids)
                paths[node["id"]] = paths[parent] + [node["text"]]
                live.append(node)
        for p in frontier:  # a node's children hold its state now
            states.pop(p, None)
        if not live or len(finished) >= settings.width:
            break
        scored = reward.score([(question, [t.strip() or t for t in paths[n["id"]]]) for n in live])
        reward_tokens += sum(s.tokens for s in scored)
        for n, s in zip(live, scored):
            n["score"] = aggregate(s.steps, "last")
        counts = allocate([n["score"] for n in live], settings.width - len(finished), settings.softmax_temperature)
        for n, c in zip(live, counts):
            n["children"] = c
            if not c:  # pruned: nothing continues it
                states.pop(n["id"], None)
        frontier, counts = [n["id"] for n, c in zip(live, counts) if c], [c for c in counts if c]
    rewards, tokens = _score(reward, question, texts, settings.aggregate, settings.step.delimiter)
    for t, r, n in zip(finished, rewards, tokens):
        t.reward, t.reward_tokens = r, n
        nodes[t.node]["score"] = r
    return SearchResult(finished, generated, prefill, reward_tokens + sum(tokens), root_prefill, nodes)
