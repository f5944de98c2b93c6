"""`s1 generate` as a user runs it: a real process, real model, JSON out, one-sentence errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from s1 import BudgetForcing
from s1.engines.base import Request, Sampling
from s1.engines.reprefill import ReprefillEngine


def s1(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="80")
    return subprocess.run([sys.executable, "-m", "s1", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_done_when_json_matches_s1s_original_loop(embedded):
    run = s1(
        "generate", "--model", "smollm2", "--format", "s1", "--max-thinking-tokens", "20", "--num-ignore", "5",
        "--temperature", "0", "--json", "What is 7*8?",
    )
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["thinking_tokens"] == 20 and record["capped"] is True
    assert set(record) >= {
        "prompt", "prompt_token_ids", "output_token_ids", "thinking", "answer", "thinking_tokens",
        "answer_tokens", "extensions_used", "capped", "finish_reason",
    }
    # s1's loop on the very prompt ids the CLI reports.
    model, tokenizer = embedded
    engine = ReprefillEngine.from_model(model, tokenizer)
    forcing = BudgetForcing(max_thinking_tokens=20, num_ignore=5)
    request = Request(record["prompt"], record["prompt_token_ids"], forcing, Sampling(), cap=20)
    [reference] = engine.generate([request])
    assert record["output_token_ids"] == reference.output_token_ids


def test_streams_thinking_then_answer(embedded):
    run = s1("generate", "What is 7*8?", "--max-thinking-tokens", "16", "--num-ignore", "3", "--max-answer-tokens", "12")
    assert run.returncode == 0, run.stderr
    assert "Final Answer:" in run.stdout and "<|im_start|>" not in run.stdout
    assert "16 thinking tokens" in run.stderr and "capped" in run.stderr


def test_input_file_gives_one_json_line_per_question(tmp_path, embedded):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "What is 2+2?"}\n"Name a colour."\n{"problem": "What is 3*3?"}\n')
    run = s1("generate", "--input", str(questions), "--max-thinking-tokens", "8", "--max-answer-tokens", "4", "--json")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(records) == 3
    assert "What is 3*3?" in records[2]["prompt"]
    assert all(r["thinking_tokens"] <= 8 for r in records)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--max-thinking-tokens", "0", "Q"], "max_thinking_tokens must be a positive"),
        (["--max-thinking-tokens", "-5", "Q"], "max_thinking_tokens must be a positive"),
        (["--max-thinking-tokens", "5", "--min-thinking-tokens", "9", "Q"], "larger than max_thinking_tokens"),
        (["--model", "no-such-org/no-such-model", "Q"], "not in the local cache"),
        (["--model", "./no/such/dir", "Q"], "does not exist"),
        (["--format", "xyz", "Q"], "Unknown thinking format"),
        (["--format", "r1", "Q"], "single token"),
        (["   "], "question is empty"),
        ([], "No question given"),
        (["--input", "/no/such/file.jsonl"], "Cannot read input file"),
        (["--max-thinking-tokens", "9000", "Q"], "exceed the model's context of 8192"),
        (["--engine", "vllm", "Q"], "Unknown engine"),
    ],
)
def test_bad_input_is_one_sentence_without_traceback(args, words):
    run = s1("generate", *args)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert words in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, run.stderr


def test_malformed_input_line_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{not json}\n')
    run = s1("generate", "--input", str(bad))
    assert run.returncode == 1 and "Line 2" in run.stderr and "Traceback" not in run.stderr
