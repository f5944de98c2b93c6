"""What a sweep has to do: every (benchmark, setting, problem, sample) as an item with its identity and
seed, and which of them the run directory does not hold yet.

A sample's identity (`config.sample_identity`) and seed depend on what the sample is, never on where it
sits in the sweep, so a resumed, extended or narrowed run (`--limit`, `--ids`) finds exactly the
samples it already has (README: "What resume reuses").
"""

from __future__ import annotations

from dataclasses import dataclass

from s1.core.sampling import Sampling, derive_seed
from s1.data.benchmarks import Problem
from s1.evaluate.config import EvalConfig, sample_identity
from s1.evaluate.methods import Setting


@dataclass
class Item:
    """One sample to draw (or, for a search setting, one problem to search)."""

    benchmark: str
    problem: Problem
    setting: Setting
    sample: int
    identity: str
    tries: int = 0
    """Rejection sampling: draws so far."""
    rejected_tokens: int = 0
    rejected_prefill_tokens: int = 0
    """Rejection sampling: what the draws that did not fit generated and processed (the record's compute)."""
    recorded: bool = False
    """Generated along with another setting's item (parallel methods sharing their trajectories)."""


@dataclass
class Plan:
    context: str
    """The hash of the run-level values every identity includes."""
    items: list[Item]
    todo: list[Item]
    """The items whose identity the run directory does not hold, in sweep order."""

    def batches(self, settings: list[Setting]):
        """(setting, its items still to do), setting by setting; an item recorded with an earlier setting's
        draw is left out."""
        for setting in settings:
            batch = [it for it in self.todo if it.setting == setting and not it.recorded]
            if batch:
                yield setting, batch


def plan(config: EvalConfig, settings: list[Setting], benchmarks: dict[str, list[Problem]], context: str, done) -> Plan:
    """Every item of the sweep once (settings x problems x samples; a search setting has one item per
    problem), and those whose identity is not in `done`."""
    items, seen = [], set()
    for name, problems in benchmarks.items():
        for s in settings:
            for p in problems:
                for k in range(1 if s.search else config.samples):
                    identity = sample_identity(context, s, p, k)
                    if identity not in seen:
                        seen.add(identity)
                        items.append(Item(name, p, s, k, identity))
    return Plan(context, items, [it for it in items if it.identity not in done])


def item_sampling(config: EvalConfig, item: Item, temperature: float) -> Sampling:
    """The sampling of an item's next draw (rejection sampling's redraws get their own seeds)."""
    seed = derive_seed(config.seed, item.sample, problem=item.problem.id, tries=item.tries)
    return config.sampling(temperature, seed)
