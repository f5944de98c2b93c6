"""Budget sweeps that share one trajectory (docs/design.md, "Sweeps share one trajectory").

With greedy decoding, or with the per-sample random stream every setting of a sample shares (its seed
follows the problem and sample, not the setting), the thinking at cap c is the first c tokens of the
thinking at any larger cap, and a run with Wait x1 is the run with Wait x2 until its second attempt to
stop. So the requests of one problem and sample that differ only in cap and Wait count are one tree:
the request with the largest of both thinks, and each other one follows it (`Request.follows`) until its
own budget decides otherwise, where the engine forks it (the forcing state says where). This module only
says who follows whom; the forcing state and the engine's loop do the rest.
"""

from __future__ import annotations

from dataclasses import replace

from s1.engines.base import Request


def _family(request: Request) -> tuple | None:
    """What requests must share to share a trajectory; None for one that cannot follow or be followed."""
    if request.plain or request.logprobs is not None or request.prompt_logprobs is not None:
        return None
    if request.resume is not None or request.step is not None:
        return None
    if "" in request.forcing.extensions:  # an ignored end is redrawn with ends banned, in the same step
        return None
    rest = replace(request.forcing, max_thinking_tokens=None, num_ignore=0)
    return (tuple(request.prompt_token_ids), request.sampling, rest, request.stop_token_ids, request.min_tokens)


def share(requests: list[Request], draws: list | None = None) -> list[Request]:
    """The requests, each that another one covers (same prompt, sampling and forcing, a cap and Wait count
    at least its own) set to follow it. A request no other covers thinks for itself; so a sweep whose
    largest setting is already done (a resumed or extended run) re-derives the trajectory it needs once
    per uncovered setting, never more. `draws` (one key per request, such as the problem and sample
    index) keeps apart requests that are separate draws although nothing else tells them apart: unseeded
    samples of one problem would otherwise share one random stream and be the same sample."""
    out = list(requests)
    groups: dict[tuple, list[int]] = {}
    for i, request in enumerate(requests):
        key = _family(request)
        if key is not None:
            groups.setdefault((key, draws[i] if draws is not None else None), []).append(i)
    for members in groups.values():
        order = sorted(members, key=lambda i: (requests[i].forcing.num_ignore, requests[i].cap), reverse=True)
        trunks: list[int] = []
        for i in order:
            mine = requests[i]
            trunk = next(
                (
                    t
                    for t in trunks
                    if requests[t].cap >= mine.cap and requests[t].forcing.num_ignore >= mine.forcing.num_ignore
                ),
                None,
            )
            if trunk is None:
                trunks.append(i)
            else:
                out[i] = replace(mine, follows=trunk)
    return out


def batches(work, settings: list, on: bool):
    """(setting, items) to run, as `Plan.batches` gives them; with sharing on, the items of every sample-based
    setting that draws once (not rejection sampling, which redraws) come first in one batch, so the engine
    sees a problem's whole sweep at once and `share` can make it one tree (its first setting names it)."""
    if not on:
        yield from work.batches(settings)
        return
    shared, rest = [], []
    for setting, items in work.batches(settings):
        (shared if not setting.kind.search and setting.reject_over is None else rest).append((setting, items))
    if shared:
        yield shared[0][0], [it for _, items in shared for it in items]
    yield from rest
