"""Running a search setting (parallel trajectories or REBASE), problem by problem: all of a problem's
trajectories run as one batch and are recorded as one record when the search ends, so a killed run
resumes at problem granularity.

Parallel settings with the same trajectories (same forcing and N) still to do for a problem share one
draw: majority, best-of-N and weighted majority then differ only in the answer they pick.
"""

from __future__ import annotations

import time
from dataclasses import replace

from s1.core.sampling import Sampling, derive_seed
from s1.engines import Engine, make_request
from s1.evaluate.config import EvalConfig
from s1.evaluate.plan import Item, Plan
from s1.evaluate.recorder import Recorder
from s1.evaluate.records import SearchRecord


def run_search(config: EvalConfig, engine: Engine, recorder: Recorder, work: Plan, items: list[Item], reward) -> None:
    """Search each problem of one setting's items and hand the records to the recorder."""
    setting = items[0].setting
    method = setting.kind
    temperature = method.temperature(config.temperature)
    for item in items:
        if item.recorded:
            continue
        problem, start = item.problem, time.perf_counter()
        group = _sharing(item, work.todo) if method.parallel else [item]
        request = make_request(
            engine.tokenizer,
            engine.format_tokens,
            engine.context_length,
            setting.prompt(problem.question),
            setting.forcing,
            replace(config.sampling(temperature), seed=None),
            config.system,
            thinking=method.thinking,
        )

        def sampling(node, j: int) -> Sampling:
            """Each trajectory's (a tree: each node's child's) own seed, from the problem id and its place."""
            return replace(request.sampling, seed=derive_seed(config.seed, j, problem=problem.id, node=node))

        scorer = reward if any(it.setting.search.reward for it in group) else None
        result = method.draw(engine, request, problem.question, setting, sampling, config.batch_size, scorer)
        seconds = round(time.perf_counter() - start, 3)
        for it in group:
            it.recorded = True
            recorder.put(
                SearchRecord(
                    context=work.context,
                    benchmark=item.benchmark,
                    id=problem.id,
                    sample=0,
                    temperature=temperature,
                    problem_hash=problem.content_hash(),
                    gold=problem.answer,
                    kind=problem.kind,
                    prompt=request.prompt,
                    trajectories=[replace(t) for t in result.trajectories],
                    generated_tokens=result.generated_tokens,
                    prefill_tokens=result.prefill_tokens,
                    # majority shares the draw but reads no reward
                    reward_tokens=result.reward_tokens if it.setting.search.reward else 0,
                    root_prefill=result.root_prefill,
                    tree=result.nodes,
                    thinking_tokens=result.generated_tokens,
                    answer_tokens=0,
                    seconds=seconds,
                    identity=it.identity,
                    method=it.setting.method,
                    setting=it.setting.label,
                    setting_spec=it.setting.spec(),
                )
            )


def _sharing(item: Item, todo: list[Item]) -> list[Item]:
    """The parallel items still to do that one draw for `item`'s problem answers: same benchmark and
    problem, same forcing and number of trajectories (the item itself among them)."""
    setting = item.setting
    return [
        it
        for it in todo
        if not it.recorded
        and it.benchmark == item.benchmark
        and it.problem is item.problem
        and it.setting.kind.parallel
        and it.setting.kind.thinking == setting.kind.thinking  # plain answers are other trajectories
        and it.setting.forcing == setting.forcing
        and it.setting.search.trajectories == setting.search.trajectories
    ]
