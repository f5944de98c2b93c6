"""torch's CPU thread count, chosen by measuring the decode loop's own steps.

No count is right everywhere: on two quiet cores two threads decode a batch of eight 1.25× faster than
one, but with another process busy on the same cores one thread ran 3× faster than two (threads wait
for each other at every operator). So the engine keeps measuring: now and then it runs a few steps at
each candidate count, back to back, and keeps the one that cost the least per token fed. Rounds that
change nothing come ever more rarely, so a settled machine pays almost nothing for the probing.
"""

from __future__ import annotations

import os
import time

import torch

COMPARABLE_TOKENS = 64
"""Only steps this small are compared (decoding steps): a prompt chunk costs less per token at any count."""


class ThreadTuner:
    def __init__(self, candidates: list[int], every: int = 64, probe: int = 3, most_every: int = 4096):
        self.candidates = sorted(set(candidates))
        self.current = self.candidates[-1]
        self.base_every, self.every, self.most_every, self.probe = every, every, most_every, probe
        self.steps = 0
        self.next_round = 0
        self.trial: list[int] = []
        """Counts still to measure in this round (the current one first), each for `probe` comparable steps."""
        self.costs: dict[int, list[float]] = {}

    @classmethod
    def for_this_machine(cls) -> ThreadTuner | None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return cls([max(1, cores // 2), cores]) if cores > 1 else None

    def threads(self) -> int:
        """The count the next step runs with."""
        if not self.trial and self.steps >= self.next_round:
            self.trial = [self.current] + [c for c in self.candidates if c != self.current]
            self.costs = {}
        return self.trial[0] if self.trial else self.current

    def record(self, threads: int, seconds: float, tokens: int) -> None:
        """One step's cost; closes the round once every candidate has had its steps."""
        self.steps += 1
        if not self.trial or threads != self.trial[0] or tokens > COMPARABLE_TOKENS:
            return
        cost = self.costs.setdefault(threads, [])
        cost.append(seconds / max(tokens, 1))
        if len(cost) < self.probe:
            return
        self.trial.pop(0)
        if not self.trial:
            best = min(self.costs, key=lambda c: sorted(self.costs[c])[len(self.costs[c]) // 2])
            self.every = min(2 * self.every, self.most_every) if best == self.current else self.base_every
            self.current = best
            self.next_round = self.steps + self.every

    def run(self, step):
        """Run `step()`, which returns (result, tokens fed), under the chosen count; returns the result."""
        n = self.threads()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        began = time.perf_counter()
        result, tokens = step()
        self.record(n, time.perf_counter() - began, tokens)
        return result
