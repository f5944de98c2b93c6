"""torch's CPU thread count, chosen by measuring the decode loop's own steps.

No count is right everywhere: on two quiet cores two threads decode a batch of eight 1.25× faster than
one, but with another process busy on the same cores one thread ran 3× faster than two (threads wait
for each other at every operator). So the engine keeps measuring: every `every` steps it runs a few
steps at each candidate count, back to back, and keeps the one that cost the least per token fed.
"""

from __future__ import annotations

import os

import torch


class ThreadTuner:
    def __init__(self, candidates: list[int], every: int = 64, probe: int = 3):
        self.candidates = sorted(set(candidates))
        self.current = self.candidates[-1]
        self.every, self.probe = every, probe
        self.steps = 0
        self.trial: list[int] = []
        """Counts still to try in this round, each for `probe` steps; the current count is tried last."""
        self.costs: dict[int, list[float]] = {}

    @classmethod
    def for_this_machine(cls) -> "ThreadTuner | None":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return cls([1, cores]) if cores > 1 else None

    def threads(self) -> int:
        """The count the next step runs with."""
        if not self.trial and self.steps % self.every == 0:
            self.trial = [c for c in self.candidates if c != self.current] + [self.current]
            self.costs = {}
        return self.trial[0] if self.trial else self.current

    def record(self, threads: int, seconds: float, tokens: int) -> None:
        """One step's cost; closes the round once every candidate has had its steps."""
        self.steps += 1
        if not self.trial:
            return
        cost = self.costs.setdefault(threads, [])
        cost.append(seconds / max(tokens, 1))
        if len(cost) >= self.probe:
            self.trial.pop(0)
            if not self.trial:
                self.current = min(self.costs, key=lambda c: sorted(self.costs[c])[len(self.costs[c]) // 2])

    def run(self, step):
        """Run `step(tokens)`-style work under the chosen count: `step()` returns the tokens it fed."""
        import time

        n = self.threads()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        began = time.perf_counter()
        result, tokens = step()
        self.record(n, time.perf_counter() - began, tokens)
        return result
