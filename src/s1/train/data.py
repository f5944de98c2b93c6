"""Training examples from s1K-style records: the prompt as the chat template renders it, the completion as
the thinking format's training template (thinking, answer delimiter, answer, the model's end token).

The split is what TRL's completion-only loss needs: the loss is on the completion, so the system and
user turns are masked exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

from s1.core.errors import UserError, first_line
from s1.core.formats import ThinkingFormat, encode
from s1.data.benchmarks import read_rows


def _trace_and_attempt(record: dict, index: int, source: str) -> tuple[str, str]:
    """s1K, s1K-1.1 or plain question/thinking/answer records -> (trace, attempt)."""
    if f"{source}_thinking_trajectory" in record:
        trace, attempt = record.get(f"{source}_thinking_trajectory"), record.get(f"{source}_attempt")
        names = (f"{source}_thinking_trajectory", f"{source}_attempt")
    elif "thinking_trajectories" in record:
        trajectories = record["thinking_trajectories"]
        if isinstance(trajectories, list) and trajectories and all(isinstance(t, str) for t in trajectories):
            trajectories = "\n".join(trajectories)  # as s1's released tokenization script joins them
        trace = trajectories
        attempt = record.get("attempt")
        names = ("thinking_trajectories", "attempt")
    else:
        trace, attempt = record.get("thinking"), record.get("answer", record.get("attempt"))
        names = ("thinking", "answer")
    for name, value in zip(names, (trace, attempt)):
        if not isinstance(value, str) or not value.strip():
            raise UserError(
                f"Record {index + 1} has no {name!r}; give each record question + thinking_trajectories + "
                "attempt (s1K), "
                "deepseek_/gemini_thinking_trajectory + _attempt (s1K-1.1), or question + thinking + answer."
            )
    return trace, attempt


def turn_end(tokenizer, fmt: ThinkingFormat) -> str:
    """What closes the assistant turn: the model's own end-of-sequence token, so every engine stops there.

    ChatML models (SmolLM2, Qwen2.5-Instruct: the paper's) have `<|im_end|>` as their EOS; R1-style
    models end with their own (`<｜end▁of▁sentence｜>`), not the `<|im_end|>` the format stops answers on.
    Only a tokenizer without an EOS falls back to the format's one-token answer stop.
    """
    if tokenizer.eos_token:
        return tokenizer.eos_token
    for stop in fmt.answer_stops:
        if len(encode(tokenizer, stop)) == 1:
            return stop
    raise UserError(
        "The tokenizer has no end-of-sequence token and the format's answer stop is not one token; "
        "set eos_token in the tokenizer's config."
    )


def with_answer_label(attempt: str, fmt: ThinkingFormat) -> str:
    """The attempt as the model learns it. s1's released tokenization script prefixes "Answer: " only when
    "Answer:" appears nowhere in the attempt, so an attempt that reasons first and ends "... Answer: 5" is
    learned as it is, not as "Answer: ... Answer: 5"."""
    label = fmt.answer_label.strip()
    if label and label not in attempt:
        attempt = fmt.answer_label + attempt.strip()
    return attempt.strip()


def render_example(
    record: dict, index: int, tokenizer, fmt: ThinkingFormat, source: str = "deepseek", system: str | None = None
) -> dict:
    """One record as {prompt, completion}; the completion (thinking, answer, end of turn) is what the loss is on."""
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"Record {index + 1} has no 'question'; every record needs the question text.")
    trace, attempt = _trace_and_attempt(record, index, source)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    start = fmt.think_start if fmt.think_start.endswith("\n") else fmt.think_start + "\n"
    if prompt.endswith(start):  # templates of R1-style models open thinking themselves
        start = ""
    attempt = with_answer_label(attempt, fmt)
    completion = f"{start}{trace.strip()}\n{fmt.think_end}{fmt.answer_separator}{attempt}{turn_end(tokenizer, fmt)}"
    return {"prompt": prompt, "completion": completion}


def load_records(data: str) -> list[dict]:
    """JSONL, JSON or Parquet files, or a hub dataset id (train split)."""
    if not data:
        raise UserError(
            "No training data; pass --data FILE.jsonl|FILE.parquet or a hub dataset id such as simplescaling/s1K-1.1."
        )
    path = Path(data)
    try:
        import datasets

        if path.exists():
            kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix.lower())
            if kind is None:
                raise UserError(f"Cannot read {data}: training data must be .jsonl, .json or .parquet.")
            if kind == "json":  # s1's one reader (as eval's): a bad line is named, nothing is dropped unseen
                records = read_rows(path)
            else:
                records = [dict(r) for r in datasets.load_dataset(kind, data_files=str(path), split="train")]
        elif data.startswith((".", "/", "~")) or path.suffix:
            raise UserError(f"Training data {data} does not exist; check the path.")
        else:
            records = [dict(r) for r in datasets.load_dataset(data, split="train")]
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"Could not load training data {data!r} ({exc.__class__.__name__}: {first_line(exc, 200)})."
        ) from None
    if not records:
        raise UserError(f"{data} holds no records.")
    return records


def thinking_chat_template(tokenizer, fmt: ThinkingFormat) -> str | None:
    """The tokenizer's chat template, extended so a generation prompt opens thinking in this format."""
    template = tokenizer.chat_template
    if not template:
        return None
    probe = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False
    )
    if probe.rstrip().endswith(fmt.think_start.rstrip()):
        return template
    return template + "{% if add_generation_prompt %}{{ " + json.dumps(fmt.think_start) + " }}{% endif %}"
