"""`s1 generate`: budget-forced answers to one question or a file of them, streamed or as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from s1.cli.common import (
    MODEL_HELP,
    REMOTE_MODE_HELP,
    BaseUrlsOpt,
    DeviceOpt,
    DtypeOpt,
    FormatOpt,
    RemoteMode,
    app,
    err,
    out,
)
from s1.cli.settings import Group, derive
from s1.core.errors import UserError
from s1.core.forcing import BudgetForcing
from s1.core.sampling import Sampling

QUESTION_FIELDS = ("question", "problem", "prompt")


def read_questions(path: Path) -> list[str]:
    """Questions from a file read as `s1 eval --data` reads one (s1/data/benchmarks.py `read_rows`: JSONL, JSON,
    CSV or Parquet; a byte-order mark or a U+2028 inside a question is fine): each record a question, problem
    or prompt field, or (JSONL) a bare JSON string."""
    from s1.data.benchmarks import read_rows

    questions = []
    for number, row in enumerate(read_rows(path, what="input", strings_as="question"), 1):
        item = next((row[k] for k in QUESTION_FIELDS if k in row), None)
        if not isinstance(item, str) or not item.strip():
            raise UserError(f'Record {number} of {path} has no question; give each a non-empty "question" field.')
        questions.append(item)
    if not questions:
        raise UserError(f"Input file {path} holds no questions.")
    return questions


class _Streamer:
    """Prints one sequence's thinking (dimmed) and then its answer as tokens arrive."""

    def __init__(self, tokenizer, format_tokens):
        from s1.core.detokenize import ThinkingSplitter

        self.splitter = ThinkingSplitter(tokenizer, format_tokens)
        self.answering = False

    def __call__(self, index, token, state) -> None:
        reasoning, content, _ = self.splitter.update(state)
        if reasoning:
            out.print(reasoning, style="dim", end="")
        if state.thinking_end is not None and not self.answering:
            self.answering = True
            out.print()
        if content:
            out.print(content, end="")


def _print_completion(c, number: int | None) -> None:
    if number is not None:
        out.rule(f"question {number}")
    out.print(c.thinking, style="dim")
    out.print(c.answer)


def _summary_line(c) -> str:
    bits = [f"{c.thinking_tokens} thinking tokens", f"{c.answer_tokens} answer tokens"]
    if c.extensions_used:
        bits.append(f"{c.extensions_used} extensions")
    if c.capped:
        bits.append("capped")
    return "[" + ", ".join(bits) + f", finish: {c.finish_reason}]"


@app.command()
@derive
def generate(
    question: Annotated[str | None, typer.Argument(help="The question; or use --input.")] = None,
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "smollm2",
    format: FormatOpt = "s1",
    engine: Annotated[
        str, typer.Option(help="hf (in-flight forcing), llamacpp (GGUF, CPU), reprefill (s1's loop) or remote.")
    ] = "hf",
    base_urls: BaseUrlsOpt = None,
    remote_mode: Annotated[RemoteMode, typer.Option(help=REMOTE_MODE_HELP)] = "auto",
    forcing: dict = Group(BudgetForcing),
    sampling: dict = Group(Sampling),
    batch_size: Annotated[int, typer.Option(help="Sequences decoded together.")] = 8,
    input: Annotated[Path | None, typer.Option("--input", help="JSONL file of questions.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per question.")] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Generate with budget forcing: cap thinking, or extend it with "Wait"."""
    from s1.core.formats import get_format
    from s1.engines import load_engine, make_request

    if question is not None and input is not None:
        raise UserError("Give either a question or --input, not both.")
    questions = read_questions(input) if input is not None else [question] if question is not None else None
    if questions is None:
        raise UserError('No question given; pass one, as in s1 generate "What is 7*8?", or --input FILE.jsonl.')
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}.")
    if any(not q.strip() for q in questions):
        raise UserError("The question is empty; pass the text of a question.")
    budget = BudgetForcing(**forcing)
    decoding = Sampling(**sampling)
    get_format(format)
    eng = load_engine(
        model,
        engine,
        format,
        device=device,
        dtype=dtype,
        base_urls=base_urls,
        remote_mode=remote_mode,
        parallel=batch_size,
    )
    requests = [
        make_request(eng.tokenizer, eng.format_tokens, eng.context_length, q, budget, decoding, system)
        for q in questions
    ]
    stream = not as_json and len(requests) == 1
    on_token = _Streamer(eng.tokenizer, eng.format_tokens) if stream else None
    completions = eng.generate(requests, batch_size=batch_size, on_token=on_token)
    for number, c in enumerate(completions, 1):
        if as_json:
            print(json.dumps(c.to_dict(), ensure_ascii=False), flush=True)
            continue
        if stream:
            out.print()
        else:
            _print_completion(c, number)
        err.print(_summary_line(c), style="cyan")
