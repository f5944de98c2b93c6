"""Step-conditional control end to end (issue 29): a tiny model trained here, through `s1 train`, on thinking
marked in steps (`<|im_start|>3 steps left` ... `<|im_start|>0`), then the paper's step-conditional recipe
(configs/paper/table3-step-conditional.yaml) through `s1 eval`: under the s1-steps format `<|im_start|>` only
opens a step mark, thinking stops at the text `<|im_start|>0` (two tokens here: the special `<|im_start|>` and
`0`), and with budget forcing the step budget caps it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from s1.cli.common import app
from s1.demo import tiny

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "paper" / "table3-step-conditional.yaml"
STEPS = 3
QUESTION = "Count down."


def step_trace(n: int) -> str:
    """The paper's step marks: each step opens with how many are left, the last mark is `<|im_start|>0`."""
    return "".join(f"<|im_start|>{k} steps left\n{k}\n" for k in range(n, 0, -1)) + "<|im_start|>0"


@pytest.fixture(scope="module")
def step_model(tmp_path_factory) -> Path:
    """The demo's character-level Llama, trained by `s1 train` until it writes the step-marked trace of the
    step-conditional prompt (one record: the test needs the mechanics learned, not generalisation)."""
    root = tmp_path_factory.mktemp("steps")
    data = root / "steps.jsonl"
    record = {
        "question": f"{QUESTION}\n\nThink for up to {STEPS} steps.",  # the step-conditional prompt, verbatim
        "thinking_trajectories": [step_trace(STEPS)],
        "attempt": "0",
    }
    data.write_text(json.dumps(record) + "\n")
    args = [
        "train", "--model", str(tiny.build(root / "init")), "--data", str(data), "--output", str(root / "run"),
        "--max-steps", "100", "--lr", "3e-3", "--batch-size", "1", "--block-size", str(tiny.CONTEXT),
        "--warmup-ratio", "0", "--weight-decay", "0", "--save-steps", "1000", "--logging-steps", "1000",
        "--report-to", "none", "--dtype", "float32",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root / "run" / "final"


@pytest.mark.slow  # about 25 s on two loaded cores: 7 s of training, then s1 eval
def test_the_step_conditional_recipe_stops_at_im_start_0_and_budget_forcing_caps_it(step_model, tmp_path):
    data = tmp_path / "countdown.jsonl"
    data.write_text(json.dumps({"id": "a", "question": QUESTION, "answer": "0"}) + "\n")
    run = tmp_path / "run"
    # 3 steps x 10 tokens: a cap below the ~45 tokens the model thinks for its 3 steps
    args = [
        "eval", "--config", str(RECIPE), "--model", str(step_model), "--data", str(data), "--steps", str(STEPS),
        "--tokens-per-step", "10", "--max-answer-tokens", "16", "--engine", "hf", "--device", "cpu",
        "--output", str(run),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    records = {r["method"]: r for r in map(json.loads, (run / "samples.jsonl").read_text().splitlines())}
    assert set(records) == {"step_conditional", "step_conditional+bf"}

    free = records["step_conditional"]
    assert free["prompt"].endswith(f"{QUESTION}\n\nThink for up to {STEPS} steps.<|im_end|>\n<|im_start|>assistant\n"
                                   "<|im_start|>think")  # fmt: skip
    thinking, _, answer = free["output"].partition("<|im_start|>answer")
    # the step marks' `<|im_start|>` did not end thinking; `<|im_start|>0` did, and left the thinking
    assert thinking == "\n" + step_trace(STEPS).removesuffix("<|im_start|>0"), free["output"]
    assert not free["capped"] and free["extensions_used"] == 0 and free["answer_tokens"] > 0
    assert free["thinking_tokens"] == len(thinking) - STEPS * len("<|im_start|>") + STEPS  # one token per mark
    assert free["forced"] == [["delimiter", len(thinking), len(thinking) + len("<|im_start|>answer")]]
    # the answer is the tiny model's own: trained on `<|im_start|>0\n<|im_start|>answer`, it sees the delimiter
    # where the mark was taken back (README, "Where s1 differs from the paper"), a context it never saw
    assert answer

    forced = records["step_conditional+bf"]
    assert forced["capped"] and forced["thinking_tokens"] == STEPS * 10
    thinking, _, answer = forced["output"].partition("<|im_start|>answer")
    assert "<|im_start|>0" not in thinking and thinking.startswith("\n<|im_start|>3 steps left\n3\n")
    assert answer.startswith("\nFinal Answer:")

    summary = json.loads((run / "summary.json").read_text())
    methods = summary["benchmarks"]["countdown"]["methods"]
    assert methods["step_conditional+bf"]["control"] == 100.0  # the cap holds the budget
    assert methods["step_conditional"]["control"] == 0.0  # the model's own 3 steps overran 30 tokens
