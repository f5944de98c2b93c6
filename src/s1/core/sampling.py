"""Sampling settings: how the model's next token is chosen (temperature 0 is greedy, as s1 evaluates)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from s1.core.errors import UserError
from s1.core.rundir import identity_hash
from s1.core.settings import setting

GREEDY_BELOW = 1e-5


SEED_LIMIT = 2**63
"""Seeds run from 0 to 2**63-1: what every engine's generator accepts."""


@dataclass(frozen=True)
class Sampling:
    """temperature 0 is greedy decoding, as s1 evaluates. Declared here once (see s1/core/settings.py)."""

    temperature: float = setting(0.0, help="Sampling temperature; 0 is greedy.", ge=0)
    top_p: float = setting(
        1.0, help="Nucleus sampling: the smallest set of tokens holding this much probability.", gt=0, le=1
    )
    seed: int | None = setting(None, help="Seed for sampling (none: unseeded).", ge=0, lt=SEED_LIMIT)
    top_k: int = setting(0, help="Sample among this many most likely tokens only; 0 or -1 keeps them all.", ge=-1)
    min_p: float = setting(
        0.0, help="Drop tokens whose probability is below this fraction of the most likely token's.", ge=0, le=1
    )
    repetition_penalty: float = setting(
        1.0, help="Divide the logits of tokens already in the prompt or output by this (1 is none).", gt=0
    )
    presence_penalty: float = setting(
        0.0, help="Subtract this from the logits of tokens already in the output.", ge=-2, le=2
    )
    frequency_penalty: float = setting(
        0.0, help="Subtract this times each token's count in the output from its logit.", ge=-2, le=2
    )

    def __post_init__(self):
        t, p = self.temperature, self.top_p
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise UserError(f"temperature must be zero (greedy) or a positive number, got {t!r}.", "temperature", t)
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 < p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {p!r}.", "top_p", p)
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < SEED_LIMIT
        ):
            raise UserError(f"seed must be a whole number from 0 to 2**63-1, got {self.seed!r}.", "seed", self.seed)
        k = self.top_k
        if not isinstance(k, int) or isinstance(k, bool) or k < -1:
            raise UserError(f"top_k must be a whole number, 0 or -1 for all tokens, got {k!r}.", "top_k", k)
        self._check("min_p", lambda v: 0 <= v <= 1, "in [0, 1]")
        self._check("repetition_penalty", lambda v: v > 0, "above 0 (1 is no penalty)")
        self._check("presence_penalty", lambda v: -2 <= v <= 2, "in [-2, 2]")
        self._check("frequency_penalty", lambda v: -2 <= v <= 2, "in [-2, 2]")

    def _check(self, name: str, ok, where: str) -> None:
        value = getattr(self, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or not ok(value):
            raise UserError(f"{name} must be {where}, got {value!r}.", name, value)

    @property
    def greedy(self) -> bool:
        """Temperatures below 1e-5 decode greedily, as vLLM does: dividing logits by them overflows."""
        return self.temperature < GREEDY_BELOW

    @property
    def penalized(self) -> bool:
        """Whether any penalty changes the logits (they apply to greedy decoding too, as in vLLM)."""
        return self.repetition_penalty != 1 or self.presence_penalty != 0 or self.frequency_penalty != 0

    @property
    def filtered(self) -> bool:
        """Whether top_k or min_p narrows the tokens a sampled row draws from."""
        return self.top_k > 0 or self.min_p > 0

    def changed(self) -> dict:
        """The settings added after temperature, top_p and seed that differ from their defaults: what stored
        identities and cache keys add, so those written before these settings existed keep their values."""
        return {name: getattr(self, name) for name in ADDED if getattr(self, name) != getattr(DEFAULT, name)}


ADDED = ("top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
DEFAULT = Sampling()


def derive_seed(
    seed: int | None,
    draw: int | str = 0,
    problem: str | None = None,
    tries: int = 0,
    node: int | str | None = None,
    at: int = 0,
) -> int | None:
    """The one place a request's seed is derived from the seed a user gave (None stays None: unseeded).

    - Draws of one request (the server's `n` choices, curation's retries of a call): draw 0 uses exactly the
      seed the client sent (as vLLM does for one choice), draw k > 0 a hash of (seed, k). Not seed + k: then
      choice 1 of seed 5 would be the very sample choice 0 of seed 6 is, and clients that number their
      requests' seeds 0, 1, 2, ... would get the same samples twice.
    - An evaluation's samples (`problem` given): a hash of the seed, the problem's id, the sample index
      and its rejection-sampling tries, so a sample's seed follows its problem's id, not its position
      (--limit and --ids never change a sample); a search's child `draw` of tree node `node` hashes as
      "node.draw". Run directories store these seeds in samples' identities: the values must never change.
    - A re-prefill round (`at` > 0, the output position the round starts at): a hash of the request's seed
      and the position, so each round of a seeded request draws its own stream (a server starts every
      request's stream afresh from its seed), and a shared sweep's branch, whose first own round starts
      where the setting run alone starts that round, sends the very seed that run sends. Round 0 is the
      request's seed itself.
    """
    if seed is None:
        return None
    if at:
        base = derive_seed(seed, draw, problem, tries, node)
        return int(identity_hash([base, "at", int(at)]), 16) % SEED_LIMIT
    if problem is None:
        return seed if int(draw) == 0 else int(identity_hash([seed, "draw", int(draw)]), 16) % SEED_LIMIT
    key = f"{node}.{draw}" if node is not None else draw
    return int(identity_hash([seed, str(problem), key, tries]), 16) % SEED_LIMIT
