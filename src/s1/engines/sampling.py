"""Choosing each row's next token from a batch of logits, in one pass for the whole batch.

Rows differ in their sampling settings (requests join a running batch with their own), so the
settings are per row; greedy rows never draw random numbers. The order is vLLM's sampler's: the
penalties change the logits (greedy rows' too), then sampled rows are divided by their temperature,
filtered by min_p, then top_k, then top_p, and drawn from.
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


class Penalties:
    """vLLM's repetition, presence and frequency penalties for one sequence. The repetition penalty divides
    positive logits (multiplies negative ones) of every token in the prompt or the output; the presence
    penalty is subtracted once from each token the output holds, the frequency penalty once per time it
    holds it. The output is budget forcing's whole output (thinking, forced runs and answer), as vLLM's
    output tokens are everything generated after the prompt. Counts are kept as the output grows."""

    def __init__(self, sampling: Sampling, prompt: list[int], vocab: int, device="cpu"):
        self.sampling = sampling
        self.vocab = vocab
        self.counts = torch.zeros(vocab, device=device)
        self.seen = 0
        self.in_prompt = torch.zeros(vocab, dtype=torch.bool, device=device)
        ids = torch.tensor([t for t in prompt if 0 <= t < vocab], dtype=torch.long, device=device)
        self.in_prompt[ids] = True

    def apply(self, logits: torch.Tensor, output: list[int]) -> torch.Tensor:
        """The row's logits (1-D) with the penalties for `output`, the sequence's output so far."""
        if len(output) > self.seen:
            new = torch.tensor(output[self.seen :], dtype=torch.long, device=self.counts.device)
            self.counts.index_add_(0, new.clamp(0, self.vocab - 1), torch.ones(len(new), device=self.counts.device))
            self.seen = len(output)
        s, n = self.sampling, logits.shape[-1]
        logits = logits.float()
        counts = self.counts[:n]
        if s.repetition_penalty != 1:
            seen = self.in_prompt[:n] | (counts > 0)
            scaled = torch.where(logits > 0, logits / s.repetition_penalty, logits * s.repetition_penalty)
            logits = torch.where(seen, scaled, logits)
        if s.frequency_penalty:
            logits = logits - s.frequency_penalty * counts
        if s.presence_penalty:
            logits = logits - s.presence_penalty * (counts > 0).float()
        return logits


def top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask tokens outside each row's nucleus (the smallest set whose probability reaches top_p)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass of strictly better tokens
    drop_sorted = before >= top_p.unsqueeze(-1)
    drop_sorted[..., 0] = False  # the most likely token always stays, however small top_p rounds
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Mask tokens whose probability is below min_p times the row's most likely token's."""
    probs = logits.softmax(dim=-1)
    floor = probs.max(dim=-1, keepdim=True).values * min_p.unsqueeze(-1)
    return logits.masked_fill(probs < floor, float("-inf"))


def top_k_filter(logits: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """Mask all but each row's k most likely tokens (k <= 0 keeps them all); ties at the k-th are kept."""
    n = logits.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp(max=n), torch.full_like(top_k, n))
    sorted_logits = torch.sort(logits, descending=True, dim=-1).values
    kth = sorted_logits.gather(-1, (k - 1).unsqueeze(-1))
    return logits.masked_fill(logits < kth, float("-inf"))


def pick_tokens(
    logits: torch.Tensor, samplings: list[Sampling], generators: list, penalized: list | None = None
) -> list[int]:
    """One token id per row: argmax for greedy rows, a seeded draw for the others. `penalized` holds per row
    None or (its `Penalties`, its output so far), for rows whose settings penalize repeats."""
    if penalized and any(p is not None for p in penalized):
        logits = logits.float().clone()
        for i, p in enumerate(penalized):
            if p is not None:
                logits[i] = p[0].apply(logits[i], p[1])
    chosen = logits.argmax(dim=-1)
    sampled_rows = [i for i, s in enumerate(samplings) if not s.greedy]
    if sampled_rows:
        rows = torch.tensor(sampled_rows, device=logits.device)
        temps = torch.tensor([samplings[i].temperature for i in sampled_rows], device=logits.device)
        top_p = torch.tensor([samplings[i].top_p for i in sampled_rows], device=logits.device)
        scaled = logits.index_select(0, rows).float() / temps.unsqueeze(-1)
        if any(samplings[i].min_p > 0 for i in sampled_rows):
            min_p = torch.tensor([samplings[i].min_p for i in sampled_rows], device=logits.device)
            scaled = min_p_filter(scaled, min_p)
        if any(samplings[i].top_k > 0 for i in sampled_rows):
            top_k = torch.tensor([samplings[i].top_k for i in sampled_rows], device=logits.device)
            scaled = top_k_filter(scaled, top_k)
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
