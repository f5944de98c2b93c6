"""The library's front door: questions in, budget-forced completions out."""

from __future__ import annotations

from s1.core.forcing import BudgetForcing
from s1.core.models import DEFAULT_MODEL
from s1.core.sampling import Sampling
from s1.engines import Completion, Engine, load_engine, make_request


def generate(
    questions: str | list[str],
    model: str | Engine = DEFAULT_MODEL,
    forcing: BudgetForcing | None = None,
    sampling: Sampling | None = None,
    fmt: str = "s1",
    engine: str = "hf",
    batch_size: int = 8,
    system: str | None = None,
    on_token=None,
    on_completion=None,
    thinking: bool = True,
) -> list[Completion]:
    """Generate with budget forcing. `model` is a name (loaded each call) or a loaded engine (reused);
    `thinking=False` asks for a plain chat answer with no thinking block opened."""
    single = isinstance(questions, str)
    questions = [questions] if single else list(questions)
    forcing = forcing or BudgetForcing()
    sampling = sampling or Sampling()
    eng = load_engine(model, engine, fmt, parallel=batch_size) if isinstance(model, str) else model
    requests = [
        make_request(eng.tokenizer, eng.format_tokens, eng.context_length, q, forcing, sampling, system, thinking)
        for q in questions
    ]
    return eng.generate(requests, batch_size=batch_size, on_token=on_token, on_completion=on_completion)
