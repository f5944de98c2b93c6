"""Branches of a shared budget sweep (`ForcingState.follow`): each leaves the trajectory it follows exactly
where its own budget decides otherwise, and ends as the setting run alone ends, token for token."""

from __future__ import annotations

import pytest

from s1 import BudgetForcing
from s1.core.forcing import Branch
from s1.core.formats import S1, FormatTokens
from s1.core.sampling import Sampling
from s1.engines.base import Request, new_state

IM_START, IM_END = 1, 2


@pytest.fixture(scope="module")
def tokens(embedded):
    return FormatTokens.build(embedded[1], S1)


def model(output: list[int], salt: int) -> int:
    """A deterministic stand-in for a model's choice given the output so far: it tries to end thinking
    about one step in seven, with either end token, and otherwise writes ordinary tokens."""
    h = (len(output) * 2654435761 + sum(output) * 40503 + salt * 97) % 1009
    if h % 7 == 0:
        return IM_START if h % 2 else IM_END
    return 300 + h % 200


def run(state, salt: int, forks: list | None = None):
    """Drive a state to its end with `model`; branches that leave on the way are collected in `forks`."""
    for _ in range(2000):
        if state.done:
            break
        state.next_token(lambda: model(state.output, salt))
        if forks is not None:
            forks += state.forks
            state.forks = []
    return state


def fields(state) -> tuple:
    return (
        state.output,
        state.thinking_tokens,
        state.answer_tokens,
        state.extensions_used,
        state.capped,
        state.finish_reason,
        state.forced_spans,
        state.thinking_end,
    )


@pytest.mark.parametrize("salt", range(6))
@pytest.mark.parametrize(
    "caps, minimum", [([0, 3, 10, 25, 60, None], 0), ([12, 25, 60], 12)], ids=["caps from 0", "with a minimum"]
)
def test_every_branch_ends_as_its_setting_alone(tokens, salt, caps, minimum):
    waits = [0, 1, 2, 3]
    base = dict(min_thinking_tokens=minimum, extensions=("Wait", "Hmm"), max_answer_tokens=5)

    def state_for(cap, k):
        forcing = BudgetForcing(max_thinking_tokens=cap, num_ignore=k, **base)
        return new_state(Request("p", [7, 8, 9], forcing, Sampling(), cap if cap is not None else 400), tokens)

    budgets = [(c, k) for c in caps for k in waits]
    alone = {b: fields(run(state_for(*b), salt)) for b in budgets}

    trunk = state_for(caps[-1], waits[-1])
    branches = [Branch(i, state_for(*b).forcing, state_for(*b).cap) for i, b in enumerate(budgets[:-1])]
    forks: list = []
    trunk.follow(branches)
    forks += trunk.forks
    trunk.forks = []
    run(trunk, salt, forks)
    ended = {budgets[key]: fields(run(state, salt)) for key, state in forks}
    ended |= {budgets[b.key]: fields(trunk.follower(b)) for b in trunk.branches}
    ended[budgets[-1]] = fields(trunk)

    assert ended == alone
    assert len({a[0] and tuple(a[0]) for a in alone.values()}) > 3, "the budgets should give different samples"
