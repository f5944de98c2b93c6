"""Choosing each row's next token from a batch of logits, in one pass for the whole batch.

Rows differ in temperature, top_p and seed (requests join a running batch with their own
settings), so the settings are per row; greedy rows never draw random numbers.
"""

from __future__ import annotations

import torch

from s1.core.sampling import Sampling


def row_generator(sampling: Sampling, device) -> torch.Generator | None:
    """A generator per sequence, so a seeded request gives the same text whatever batch it runs in."""
    if sampling.greedy:
        return None
    generator = torch.Generator(device=device)
    if sampling.seed is None:
        generator.seed()
    else:
        generator.manual_seed(sampling.seed)
    return generator


def top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask tokens outside each row's nucleus (the smallest set whose probability reaches top_p)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass of strictly better tokens
    drop_sorted = before >= top_p.unsqueeze(-1)
    drop_sorted[..., 0] = False  # the most likely token always stays, however small top_p rounds
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def pick_tokens(logits: torch.Tensor, samplings: list[Sampling], generators: list) -> list[int]:
    """One token id per row: argmax for greedy rows, a seeded draw for the others."""
    chosen = logits.argmax(dim=-1)
    sampled_rows = [i for i, s in enumerate(samplings) if not s.greedy]
    if sampled_rows:
        rows = torch.tensor(sampled_rows, device=logits.device)
        temps = torch.tensor([samplings[i].temperature for i in sampled_rows], device=logits.device)
        top_p = torch.tensor([samplings[i].top_p for i in sampled_rows], device=logits.device)
        scaled = logits.index_select(0, rows).float() / temps.unsqueeze(-1)
        if (top_p < 1).any():
            scaled = top_p_filter(scaled, top_p)
        probs = scaled.softmax(dim=-1)
        for j, i in enumerate(sampled_rows):
            chosen[i] = torch.multinomial(probs[j], 1, generator=generators[i])[0]
    return chosen.tolist()


def choose_option(options: list[list[int]], logits_now, feed) -> int:
    """Constrained greedy decoding over a fixed set of replies (token sequences): at each position only
    tokens that continue some option are allowed, and the most likely of them is taken. Returns the index
    of the option decoded. `logits_now()` gives the logits for the next token, `feed(token)` appends one.

    Why greedy over a trie rather than scoring every option: one forward per token of the reply instead of
    one per option, and the same choice a constrained sampler (vLLM's guided_choice) makes at temperature 0.
    """
    if not options or any(not o for o in options):
        raise ValueError("every option needs at least one token")
    alive = list(range(len(options)))
    position = 0
    while True:
        logits = logits_now()
        allowed = {options[i][position] for i in alive}
        best = max(allowed, key=lambda t: float(logits[t]))
        alive = [i for i in alive if options[i][position] == best]
        position += 1
        complete = [i for i in alive if len(options[i]) == position]
        if complete:
            return complete[0]
        feed(best)
