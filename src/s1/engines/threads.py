"""torch's CPU thread count: chosen by measuring the decode loop's own steps, or from the cores free.

No count is right everywhere: on two quiet cores two threads decode a batch of eight 1.25× faster than
one, but with another process busy on the same cores one thread ran 3× faster than two (threads wait
for each other at every operator; training ran 15× slower). So the engine keeps measuring: now and then
it runs a few steps at each candidate count, back to back, and keeps the one that cost the least per
token fed. Rounds that change nothing come ever more rarely, so a settled machine pays almost nothing
for the probing. Other torch work (training, the re-prefill engine, reward models) uses the cores that
are free: those this process may run on (CPU affinity, a container's CPU quota) less those other
processes keep busy (/proc/stat, less this process's own CPU time), read again now and then.
An explicit OMP_NUM_THREADS is the user's choice and is kept.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

RECHECK_SECONDS = 10.0
"""How often work that follows the free cores reads them again."""


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, within the cgroup's CPU quota (containers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_quota()
    return max(1, min(cores, math.floor(quota + 0.5))) if quota else max(1, cores)


def cgroup_quota(root: str | Path = "/sys/fs/cgroup") -> float | None:
    """CPUs the cgroup may use (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`), None when unlimited or unknown."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 else None
    except (OSError, ValueError):
        return None


class BusyMeter:
    """How many of this process's cores other processes kept busy since the last reading: the busy time of
    the CPUs it may run on (/proc/stat) less its own CPU time, over the wall time between readings."""

    def __init__(self):
        self.last = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            cpus = os.sched_getaffinity(0)
            busy = 0
            for line in Path("/proc/stat").read_text().splitlines():
                name, *values = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
                    busy += user + nice + system + irq + softirq + steal
        except (OSError, ValueError, AttributeError):
            return None
        own = os.times()
        return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system

    def others(self) -> float | None:
        """Cores busy with other processes' work since the last call (None where /proc/stat is missing)."""
        now = self._sample()
        then, self.last = self.last, now
        if now is None or then is None or now[0] - then[0] < 0.05:
            return None
        return max(0.0, (now[1] - then[1]) - (now[2] - then[2])) / (now[0] - then[0])


def free_cores(meter: BusyMeter | None = None, wait: float = 0.3) -> int:
    """Cores free for this process's work now: usable ones less those others keep busy (measured over `wait`
    seconds when no meter with an earlier reading is given); at least one."""
    if meter is None:
        meter = BusyMeter()
        time.sleep(wait)
    others = meter.others()
    return max(1, usable_cores() - round(others or 0.0))


def use_free_cores(meter: BusyMeter | None = None) -> int:
    """Set torch's thread count to the free cores (unless OMP_NUM_THREADS names a count); returns the count."""
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return torch.get_num_threads()
    threads = free_cores(meter)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


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
        cores = usable_cores()
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
