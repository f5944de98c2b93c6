"""`s1 train`: rendering, the assistant-only label mask, the recipe, resuming, and two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s1 import UserError
from s1.formats import S1
from s1.train import TrainConfig, render_example, validate

ROOT = Path(__file__).resolve().parents[1]


def s1(*args, launcher=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    command = launcher or [sys.executable, "-m", "s1"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)


@pytest.fixture(scope="module")
def s1k_file(tmp_path_factory):
    """Sixteen s1K-format records (question, thinking_trajectories, attempt) made for the test."""
    path = tmp_path_factory.mktemp("data") / "s1k.jsonl"
    with path.open("w") as f:
        for i in range(16):
            a, b = 3 + i, 7 + 2 * i
            trace = f"We need {a} times {b}. {a} times {b} is {a * b}. Check: {a * b} divided by {b} is {a}."
            f.write(json.dumps({"question": f"What is {a}*{b}?", "thinking_trajectories": [trace], "attempt": f"$\\boxed{{{a * b}}}$"}) + "\n")
    return path


def test_s1_training_template(embedded):
    tokenizer = embedded[1]
    ex = render_example({"question": "What is 2+2?", "thinking_trajectories": ["2 plus 2 is 4."], "attempt": "4"}, 0, tokenizer, S1)
    assert ex["prompt"].endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert ex["completion"] == "<|im_start|>think\n2 plus 2 is 4.\n<|im_start|>answer\nAnswer: 4<|im_end|>"
    # "Answer: " only when the attempt lacks it
    again = render_example({"question": "q", "thinking": "t", "answer": "Answer: 5"}, 0, tokenizer, S1)
    assert again["completion"].endswith("<|im_start|>answer\nAnswer: 5<|im_end|>")


def test_s1k_11_records_choose_their_trace(embedded):
    record = {"question": "q", "deepseek_thinking_trajectory": "deep", "deepseek_attempt": "1", "gemini_thinking_trajectory": "gem", "gemini_attempt": "2"}
    assert "deep" in render_example(record, 0, embedded[1], S1, "deepseek")["completion"]
    assert "gem\n" in render_example(record, 0, embedded[1], S1, "gemini")["completion"]


def test_missing_field_names_the_record(embedded):
    records = [{"question": "q", "thinking_trajectories": ["t"], "attempt": "a"}, {"question": "q2", "thinking_trajectories": ["t"]}]
    render_example(records[0], 0, embedded[1], S1)
    with pytest.raises(UserError, match="Record 2 has no 'attempt'"):
        render_example(records[1], 1, embedded[1], S1)


def test_loss_is_only_on_the_assistant_part(tiny, s1k_file, tmp_path):
    """Tokens of the system and user turns are masked (-100); thinking, answer and end token are learned."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = tiny
    record = json.loads(s1k_file.read_text().splitlines()[0])
    ex = render_example(record, 0, tokenizer, S1)
    args = SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, packing=False, max_length=512, report_to=[],
                     use_cpu=True, activation_checkpointing=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list([ex]), processing_class=tokenizer)
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]
    prompt_len = len(tokenizer.encode(ex["prompt"], add_special_tokens=False))
    assert tokenizer.decode(ids) == ex["prompt"] + ex["completion"]
    for position, (token, label) in enumerate(zip(ids, labels)):
        if position < prompt_len:
            assert label == -100, f"prompt token {position} ({tokenizer.decode([token])!r}) is not masked"
        else:
            assert label == token, f"completion token {position} ({tokenizer.decode([token])!r}) is masked"
    learned = tokenizer.decode([t for t, l in zip(ids, labels) if l != -100])
    assert learned == ex["completion"]
    assert learned.startswith("<|im_start|>think\n") and learned.endswith("<|im_end|>")


def test_recipe_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.epochs, c.lr, c.batch_size, c.warmup_ratio, c.weight_decay, c.adam_beta1, c.adam_beta2, c.block_size) == (
        5.0, 1e-5, 16, 0.05, 1e-4, 0.9, 0.95, 32768
    )
    assert validate(c) == 16  # micro batch 1, one process: 16 accumulation steps


def test_global_batch_must_divide(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert validate(TrainConfig(batch_size=16, micro_batch_size=2)) == 2
    with pytest.raises(UserError, match="not a multiple"):
        validate(TrainConfig(batch_size=16, micro_batch_size=3))


def test_bad_training_input_is_one_sentence(tmp_path):
    run = s1("train", "--data", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o"))
    assert run.returncode == 1 and "does not exist" in run.stderr and "Traceback" not in run.stderr
    run = s1("train", "--data", str(tmp_path / "x.jsonl"), "--long-sequences", "chop")
    assert run.returncode == 1 and "--long-sequences" in run.stderr


def test_resume_continues_from_the_last_checkpoint(tiny_dir, s1k_file, tmp_path):
    out = tmp_path / "run"
    common = ["train", "--model", str(tiny_dir), "--data", str(s1k_file), "--output", str(out), "--batch-size", "2",
              "--lr", "1e-3", "--block-size", "256", "--save-steps", "2"]
    first = s1(*common, "--max-steps", "4")
    assert first.returncode == 0, first.stderr
    assert (out / "checkpoint-4").is_dir()
    second = s1(*common, "--max-steps", "6", "--resume")
    assert second.returncode == 0, second.stderr
    record = json.loads((out / "ranks" / "rank-0.json").read_text())
    assert record["global_step"] == 6
    logged = (second.stdout + second.stderr).count("'loss':")
    assert logged == 2, "the resumed run trained again from step 0"


def test_two_processes_train_the_same_model(tiny_dir, s1k_file, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "configs/accelerate/cpu_2proc.yaml"),
                "--main_process_port", "29531", "-m", "s1"]
    run = s1("train", "--model", str(tiny_dir), "--data", str(s1k_file), "--output", str(out), "--max-steps", "4",
             "--batch-size", "4", "--lr", "1e-3", "--block-size", "256", launcher=launcher)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 4
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the logged loss is the mean over both processes
    assert ranks[0]["fingerprint"] == ranks[1]["fingerprint"]


@pytest.mark.slow
def test_thirty_steps_on_the_embedded_model_learn_and_budget_force(embedded, s1k_file, tmp_path):
    out = tmp_path / "run"
    run = s1("train", "--model", "smollm2", "--data", str(s1k_file), "--output", str(out), "--max-steps", "30",
             "--batch-size", "2", "--lr", "1e-4", "--block-size", "512", "--save-steps", "30")
    assert run.returncode == 0, run.stderr[-3000:]
    losses = json.loads((out / "ranks" / "rank-0.json").read_text())["losses"]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    final = out / "final"
    assert "<|im_start|>think" in (final / "chat_template.jinja").read_text()
    gen = s1("generate", "--model", str(final), "--max-thinking-tokens", "12", "--max-answer-tokens", "16", "--json", "What is 9*11?")
    assert gen.returncode == 0, gen.stderr
    record = json.loads(gen.stdout)
    assert record["prompt"].endswith("<|im_start|>assistant\n<|im_start|>think")
    assert record["prompt"].count("<|im_start|>think") == 1
    assert record["thinking_tokens"] <= 12 and record["answer"]
