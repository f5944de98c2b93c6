"""`s1 generate` as a user runs it: a real process, real model, JSON out, one-sentence errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from s1 import BudgetForcing
from s1.core.sampling import Sampling
from s1.engines.base import Request
from s1.engines.reprefill import ReprefillEngine


def s1(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="80")
    return subprocess.run([sys.executable, "-m", "s1", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_done_when_json_matches_s1s_original_loop(embedded):
    run = s1(
        "generate",
        "--model",
        "smollm2",
        "--format",
        "s1",
        "--max-thinking-tokens",
        "20",
        "--num-ignore",
        "5",
        "--temperature",
        "0",
        "--json",
        "What is 7*8?",
    )
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["thinking_tokens"] == 20 and record["capped"] is True
    assert set(record) >= {
        "prompt",
        "prompt_token_ids",
        "output_token_ids",
        "thinking",
        "answer",
        "thinking_tokens",
        "answer_tokens",
        "extensions_used",
        "capped",
        "finish_reason",
    }
    # s1's loop on the very prompt ids the CLI reports.
    model, tokenizer = embedded
    engine = ReprefillEngine.from_model(model, tokenizer)
    forcing = BudgetForcing(max_thinking_tokens=20, num_ignore=5)
    request = Request(record["prompt"], record["prompt_token_ids"], forcing, Sampling(), cap=20)
    [reference] = engine.generate([request])
    assert record["output_token_ids"] == reference.output_token_ids


def test_streams_thinking_then_answer(embedded):
    run = s1(
        "generate", "What is 7*8?", "--max-thinking-tokens", "16", "--num-ignore", "3", "--max-answer-tokens", "12"
    )
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
        (["--extension", "<|im_start|>", "--num-ignore", "1", "Q"], "ends thinking"),
        (["--max-thinking-tokens", "-5", "Q"], "max_thinking_tokens must be zero (no thinking) or a positive"),
        (["--min-thinking-tokens", "9000", "Q"], "cannot fit"),
        (["--max-thinking-tokens", "5", "--min-thinking-tokens", "9", "Q"], "larger than max_thinking_tokens"),
        (["--model", "no-such-org/no-such-model", "Q"], "not in the local cache"),
        (["--model", "./no/such/dir", "Q"], "does not exist"),
        (["--format", "xyz", "Q"], "Unknown thinking format"),
        (["   "], "question is empty"),
        ([], "No question given"),
        (["--input", "/no/such/file.jsonl"], "Cannot read input file"),
        (["--max-thinking-tokens", "9000", "Q"], "exceed the model's context of 8192"),
        (["--thinking-grace-tokens", "-3", "Q"], "thinking_grace_tokens must be zero (no grace) or a positive"),
        (["--max-thinking-tokens", "8000", "--thinking-grace-tokens", "900", "Q"], "(and 900 of grace)"),
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


def one_error_line(run: subprocess.CompletedProcess) -> str:
    """The run failed with exactly one 'Error:' line on stderr and no traceback; returns that line."""
    assert run.returncode != 0, run.stdout
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, run.stderr
    return errors[0]


@pytest.fixture(scope="module")
def s1k_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "s1k.jsonl"
    path.write_text(
        json.dumps({"question": "What is 2+2? " * 20, "thinking_trajectories": ["2+2=4"], "attempt": "4"}) + "\n"
    )
    return path


BAD_INPUTS = {
    "bare s1": ([], 2, "No command given"),
    "unknown command": (["frobnicate"], 2, "No such command"),
    "unknown option": (["generate", "--frob", "Q"], 2, "No such option"),
    "non-integer cap": (["generate", "--max-thinking-tokens", "abc", "Q"], 2, "valid integer"),
    "non-integer limit": (["eval", "--limit", "two"], 2, "valid integer"),
    "--json with a value": (["generate", "Q", "--json", "true"], 2, "unexpected extra argument"),
    "report without runs": (["report"], 2, "Missing argument"),
    "report on a non-run dir": (["report", "/"], 1, "has no summary.json"),
    "cuda without a GPU": (["generate", "--device", "cuda", "Q"], 1, "no CUDA GPU"),
    "unknown device": (["generate", "--device", "tpu", "Q"], 1, "Unknown device"),
    "tokens per step 0": (
        ["eval", "--method", "step_conditional", "--max-thinking-tokens", "100", "--tokens-per-step", "0"],
        1,
        "--tokens-per-step must be at least 1",
    ),
    "huge seed (generate)": (["generate", "--seed", str(2**64), "Q"], 1, "seed must be a whole number from 0"),
    "huge seed (eval)": (["eval", "--seed", str(2**64)], 1, "seed must be a whole number from 0"),
    "empty question": (["generate", ""], 1, "question is empty"),
    "answer kind": (["eval", "--answer-kind", "essay"], 1, "--answer-kind must be"),
    "negative batch": (["eval", "--batch-size", "0"], 1, "--batch-size must be at least 1"),
    "rich markup in a value": (["eval", "--benchmark", "[/]"], 1, "Unknown benchmark '[/]'"),
    "empty --ids": (["eval", "--ids", ","], 1, "--ids names no id"),
    "unknown engine (eval)": (["eval", "--engine", "vllm"], 1, "Unknown engine"),
    # bytes that are not UTF-8 reach Python as lone surrogates, which crashed the tokenizer with a traceback
    "a question not in UTF-8": (
        ["generate", os.fsdecode(b"\xff abc")],
        2,
        "Argument 2 is not valid UTF-8 text (byte 0xff)",
    ),
    "an answer prefix not in UTF-8": (
        ["generate", "--answer-prefix", os.fsdecode(b"\xe9t\xe9"), "Q"],
        2,
        "The value of --answer-prefix is not valid UTF-8",
    ),
    "an --option=value not in UTF-8": (["eval", os.fsdecode(b"--system-prompt=\xff")], 2, "--system-prompt is not"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_cli_input_is_one_line_without_traceback(name, data_dir, tmp_path):
    args, code, words = BAD_INPUTS[name]
    if args and args[0] == "eval":
        args = [*args, "--data-dir", str(data_dir), "--output", str(tmp_path / "run")]
    run = s1(*args, timeout=120)
    line = one_error_line(run)
    assert words in line, run.stderr
    assert run.returncode == code, run.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["generate", "--input", "{file}"],
        ["eval", "--data", "{file}", "--output", "{tmp}/run", "--max-thinking-tokens", "8"],
        ["train", "--data", "{file}", "--output", "{tmp}/out", "--max-steps", "1"],
    ],
)
def test_a_lone_surrogate_in_an_input_file_is_one_sentence_naming_the_line(tmp_path, command):
    """One reader (read_rows) for every command's input file: JSON's "\\ud800" used to pass it and crash later."""
    path = tmp_path / "in.jsonl"
    record = {"question": "What is 2+2?", "thinking_trajectories": ["4"], "attempt": "4", "answer": "4"}
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, "question": "x\ud800"}) + "\n")
    line = one_error_line(s1(*(a.format(file=path, tmp=tmp_path) for a in command), timeout=240))
    assert f"Line 2 of {path}" in line and "'question'" in line and "not valid Unicode" in line, line


def test_unwritable_or_file_output_is_one_sentence(tmp_path, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for output in (blocker, blocker / "below"):
        run = s1("eval", "--data-dir", str(data_dir), "--output", str(output), "--max-thinking-tokens", "8")
        assert "--output" in one_error_line(run) or "output directory" in one_error_line(run)


def test_unreadable_summary_is_one_sentence(tmp_path):
    (tmp_path / "summary.json").write_bytes(b'{"benchmarks": "\xff"}')
    line = one_error_line(s1("report", str(tmp_path)))
    assert "cannot be read" in line


@pytest.mark.parametrize(
    "args, words",
    [
        (["--warmup-ratio", "-1"], "--warmup-ratio"),
        (["--report-to", "bogus"], "report_to (--report-to) must be one of"),
        (["--logging-steps", "0"], "logging_steps (--logging-steps) and save_steps (--save-steps) must be at least 1"),
        (["--block-size", "16"], "no answer token"),
    ],
)
def test_bad_train_input_is_one_sentence(tmp_path, s1k_file, args, words):
    run = s1("train", "--data", str(s1k_file), "--output", str(tmp_path / "out"), "--max-steps", "1", *args)
    assert words in one_error_line(run)


def test_train_into_a_file_is_one_sentence(tmp_path, s1k_file):
    target = tmp_path / "file"
    target.write_text("x")
    assert "is a file" in one_error_line(s1("train", "--data", str(s1k_file), "--output", str(target)))


def test_ctrl_c_prints_interrupted_exits_130_and_leaves_nothing(tmp_path, tiny_dir, data_dir):
    from tests.evaluate.test_evaluate import alive, descendants

    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        # 200 problems: generation runs ahead of grading (whose worker starts slowly under load), so a short run
        # could finish between its first graded sample and the interrupt; this one is interrupted long before
        [
            sys.executable,
            "-m",
            "s1",
            "eval",
            "--model",
            str(tiny_dir),
            "--benchmark",
            "math500",
            "--limit",
            "200",
            "--data-dir",
            str(data_dir),
            "--max-thinking-tokens",
            "48,96",
            "--max-answer-tokens",
            "8",
            "--batch-size",
            "1",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not ((out / "samples.jsonl").exists() and (out / "samples.jsonl").read_text()):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted; the test proves nothing"
    children = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group, grader worker included
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Interrupted." in stderr and "Traceback" not in stderr, stderr
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(p) for p in children):
        time.sleep(0.2)
    assert not [p for p in children if alive(p)]


def test_malformed_input_line_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{not json}\n')
    run = s1("generate", "--input", str(bad))
    assert run.returncode == 1 and "Line 2" in run.stderr and "Traceback" not in run.stderr


def test_an_exception_that_says_nothing_still_makes_a_sentence():
    """Every one-sentence error quotes the cause's first line; an empty message must not break it (it raised
    IndexError, a traceback, where a library's exception carried no text)."""
    from s1.core.errors import first_line

    assert first_line(OSError()) == "OSError"
    assert first_line(ValueError("\n  bad value\nmore detail"), 5) == "bad v"


LINE_SEPARATOR_QUESTION = "First line\u2028second line: what is 2+2?"


def _questions_with_a_bom(path):
    """A JSONL file as some editors write it: a byte-order mark first, and a question holding U+2028 (a line
    separator to str.splitlines, an ordinary character inside a JSON string)."""
    rows = [
        {"id": "a", "question": LINE_SEPARATOR_QUESTION, "answer": "4"},
        {"id": "b", "question": "1+1?", "answer": "2"},
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    return path


def test_generate_input_reads_a_bom_and_u2028_as_eval_data_does(tmp_path, tiny_dir):
    """s1 generate --input reads its file with the one reader s1 eval --data uses (it split lines on U+2028 and
    choked on the byte-order mark)."""
    path = _questions_with_a_bom(tmp_path / "q.jsonl")
    args = ("--model", str(tiny_dir), "--max-thinking-tokens", "2", "--max-answer-tokens", "1", "--json")
    run = s1("generate", "--input", str(path), *args)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.split("\n") if line]  # U+2028 is printed as is
    assert len(records) == 2 and LINE_SEPARATOR_QUESTION in records[0]["prompt"]


def test_eval_data_reads_a_bom_and_u2028(tmp_path):
    from s1.evaluate.config import EvalConfig

    path = _questions_with_a_bom(tmp_path / "q.jsonl")
    [problems] = EvalConfig(data=str(path)).load_benchmarks().values()
    assert [p.question for p in problems] == [LINE_SEPARATOR_QUESTION, "1+1?"]
