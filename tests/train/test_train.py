"""`s1 train`: rendering, the label mask, the recipe (file, flags, --set), FSDP on two processes, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s1 import UserError
from s1.core.formats import R1, S1
from s1.train.data import render_example, turn_end
from s1.train.recipe import PAPER, TrainConfig, build
from s1.train.trainer import accumulation_steps, newest_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY_RECIPE = ROOT / "configs/recipes/cpu-tiny.yaml"
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]


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
            f.write(
                json.dumps(
                    {
                        "question": f"What is {a}*{b}?",
                        "thinking_trajectories": [trace],
                        "attempt": f"$\\boxed{{{a * b}}}$",
                    }
                )
                + "\n"
            )
    return path


def tiny_run(tiny_dir, s1k_file, out, *extra):
    """The CPU recipe on the tiny model: 8 steps, global batch 2, a checkpoint every 2 steps."""
    return [
        "train",
        "--config",
        str(TINY_RECIPE),
        "--model",
        str(tiny_dir),
        "--data",
        str(s1k_file),
        "--output",
        str(out),
        "--save-steps",
        "2",
        "--report-to",
        "none",
        *extra,
    ]


def weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.fixture(scope="module")
def single_run(tiny_dir, s1k_file, tmp_path_factory):
    """One process, never interrupted: the reference the resumed and the FSDP runs must reproduce."""
    out = tmp_path_factory.mktemp("single") / "run"
    run = s1(*tiny_run(tiny_dir, s1k_file, out))
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_s1_training_template(embedded):
    tokenizer = embedded[1]
    ex = render_example(
        {"question": "What is 2+2?", "thinking_trajectories": ["2 plus 2 is 4."], "attempt": "4"}, 0, tokenizer, S1
    )
    assert ex["prompt"].endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert ex["completion"] == "<|im_start|>think\n2 plus 2 is 4.\n<|im_start|>answer\nAnswer: 4<|im_end|>"
    # "Answer: " only when the attempt lacks it
    again = render_example({"question": "q", "thinking": "t", "answer": "Answer: 5"}, 0, tokenizer, S1)
    assert again["completion"].endswith("<|im_start|>answer\nAnswer: 5<|im_end|>")


@pytest.mark.parametrize(
    "attempt, learned",
    [
        ("4", "Answer: 4"),
        ("  $\\boxed{4}$\n", "Answer: $\\boxed{4}$"),
        ("Answer: 4", "Answer: 4"),
        # s1's rule: "Answer:" anywhere in the attempt, not only at its start, means no prefix
        ("Adding the two gives 4.\n\nFinal Answer: 4", "Adding the two gives 4.\n\nFinal Answer: 4"),
        ("We add.\nAnswer: $\\boxed{4}$", "We add.\nAnswer: $\\boxed{4}$"),
        # only the exact "Answer:" counts, as in s1 (case and the colon matter)
        ("The answer is 4", "Answer: The answer is 4"),
        ("ANSWER: 4", "Answer: ANSWER: 4"),
    ],
)
def test_answer_prefix_is_added_only_when_answer_appears_nowhere(embedded, attempt, learned):
    ex = render_example({"question": "q", "thinking_trajectories": ["t"], "attempt": attempt}, 0, embedded[1], S1)
    assert ex["completion"] == f"<|im_start|>think\nt\n<|im_start|>answer\n{learned}<|im_end|>"


def test_several_trajectories_are_joined_by_a_newline_as_s1_did(embedded):
    record = {"question": "q", "thinking_trajectories": ["First pass.", "Second pass."], "attempt": "4"}
    ex = render_example(record, 0, embedded[1], S1)
    assert ex["completion"].startswith("<|im_start|>think\nFirst pass.\nSecond pass.\n<|im_start|>answer\n")
    with pytest.raises(UserError, match="Record 1 has no 'thinking_trajectories'"):
        render_example({"question": "q", "thinking_trajectories": ["a", 3], "attempt": "4"}, 0, embedded[1], S1)


def test_r1_turns_end_with_the_models_own_eos(embedded):
    """An R1-style model stops at its EOS; ending its turns with the format's <|im_end|> would teach it never to
    stop."""
    import copy

    tokenizer = copy.deepcopy(embedded[1])
    tokenizer.eos_token = "<|endoftext|>"
    ex = render_example({"question": "q", "thinking": "t", "answer": "5"}, 0, tokenizer, R1)
    assert ex["completion"].endswith("5<|endoftext|>")
    assert "<|im_end|>" not in ex["completion"]
    assert turn_end(tokenizer, R1) == "<|endoftext|>"


def test_s1k_11_records_choose_their_trace(embedded):
    record = {
        "question": "q",
        "deepseek_thinking_trajectory": "deep",
        "deepseek_attempt": "1",
        "gemini_thinking_trajectory": "gem",
        "gemini_attempt": "2",
    }
    assert "deep" in render_example(record, 0, embedded[1], S1, "deepseek")["completion"]
    assert "gem\n" in render_example(record, 0, embedded[1], S1, "gemini")["completion"]


def test_missing_field_names_the_record(embedded):
    records = [
        {"question": "q", "thinking_trajectories": ["t"], "attempt": "a"},
        {"question": "q2", "thinking_trajectories": ["t"]},
    ]
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
    args = SFTConfig(
        output_dir=str(tmp_path),
        completion_only_loss=True,
        packing=False,
        max_length=512,
        report_to=[],
        use_cpu=True,
        activation_checkpointing=False,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list([ex]), processing_class=tokenizer
    )
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]
    prompt_len = len(tokenizer.encode(ex["prompt"], add_special_tokens=False))
    assert tokenizer.decode(ids) == ex["prompt"] + ex["completion"]
    for position, (token, label) in enumerate(zip(ids, labels)):
        if position < prompt_len:
            assert label == -100, f"prompt token {position} ({tokenizer.decode([token])!r}) is not masked"
        else:
            assert label == token, f"completion token {position} ({tokenizer.decode([token])!r}) is masked"
    learned = tokenizer.decode([t for t, label in zip(ids, labels) if label != -100])
    assert learned == ex["completion"]
    assert learned.startswith("<|im_start|>think\n") and learned.endswith("<|im_end|>")


def test_recipe_defaults_are_the_papers_and_the_32b_file_says_the_same():
    c = build()
    assert (
        c.value("num_train_epochs"),
        c.value("learning_rate"),
        c.batch_size,
        c.value("warmup_steps"),
        c.value("weight_decay"),
        c.value("adam_beta1"),
        c.value("adam_beta2"),
        c.value("max_length"),
        c.value("lr_scheduler_type"),
    ) == (5.0, 1e-5, 16, 0.05, 1e-4, 0.9, 0.95, 32768, "cosine")
    assert accumulation_steps(c) == 16  # micro batch 1, one process: 16 accumulation steps
    paper = build(str(ROOT / "configs/recipes/s1-32b.yaml"))
    assert (paper.model, paper.data, paper.batch_size) == ("Qwen/Qwen2.5-32B-Instruct", "simplescaling/s1K", 16)
    assert paper.trace_source == "gemini"
    for key, value in PAPER.items():
        assert paper.value(key) == value or key in ("activation_checkpointing",), key
    assert paper.value("activation_checkpointing") is True


def test_the_s11_recipe_trains_deepseek_traces_of_s1k_11_at_s1s_block_20000():
    """s1.1-32B: the s1K questions with DeepSeek-R1's traces; s1 cut the block to 20,000 for it (out of memory)."""
    s1 = build(str(ROOT / "configs/recipes/s1-32b.yaml"))
    s11 = build(str(ROOT / "configs/recipes/s1.1-32b.yaml"))
    assert (s11.model, s11.data, s11.trace_source, s11.format) == (
        "Qwen/Qwen2.5-32B-Instruct",
        "simplescaling/s1K-1.1",
        "deepseek",
        "s1",
    )
    assert (s1.value("max_length"), s11.value("max_length")) == (32768, 20000)
    differ = {k for k in set(s1.sft) | set(s11.sft) if s1.value(k) != s11.value(k)}
    assert differ == {"max_length"}  # every other training value is the same run's
    assert (s1.output, s11.output) == ("runs/s1-32b", "runs/s1.1-32b")


def test_file_flags_and_set_layer_in_that_order(tmp_path):
    recipe = tmp_path / "r.yaml"
    # TRL / open-r1 names; YAML reads 2e-5 as text, the field's type makes it a float
    recipe.write_text(
        "model_name_or_path: some/model\nlearning_rate: 2e-5\nwarmup_ratio: 0.1\ngradient_checkpointing: true\n"
        "num_train_epochs: 3\nlr_scheduler_type: linear\n"
    )
    c = build(
        str(recipe),
        {"epochs": 2.0, "lr": None},
        [
            "lr_scheduler_type=constant",
            "max_grad_norm=0.5",
            "optim=adamw_torch_fused",
            "report_to=none",
            "neftune_noise_alpha=null",
        ],
    )
    assert c.model == "some/model"
    assert c.sft["learning_rate"] == 2e-5 and isinstance(c.sft["learning_rate"], float)
    assert c.sft["warmup_steps"] == 0.1 and c.sft["activation_checkpointing"] is True
    assert c.sft["num_train_epochs"] == 2.0  # the flag over the file
    assert c.sft["lr_scheduler_type"] == "constant"  # --set over the file
    assert (c.sft["max_grad_norm"], c.sft["optim"], c.sft["neftune_noise_alpha"]) == (0.5, "adamw_torch_fused", None)
    # text stays text where a field also takes a list; "none" for report_to trains without reporting
    special = build(None, {"report_to": "none"}, ["optim_target_modules=all-linear", "optim_target_modules=all-linear"])
    assert special.sft["optim_target_modules"] == "all-linear"
    assert (
        build(None, {"dtype": "bf16"}).dtype == "bfloat16" and build(None, {}, ["torch_dtype=fp32"]).dtype == "float32"
    )


BAD_RECIPES = {
    "unknown key": ([], ["learnin_rate=1"], "Unknown training key 'learnin_rate'", "did you mean 'learning_rate'"),
    "all unknown keys at once": (
        [],
        ["model_revision=main", "learnin_rate=1"],
        "Unknown training keys 'model_revision' (a key of TRL's",
        "'learnin_rate' (did you mean",
    ),
    "not KEY=VALUE": ([], ["learning_rate"], "is not KEY=VALUE", ""),
    "text for a number": ([], ["learning_rate=fast"], "learning_rate must be a number", ""),
    "fraction for a whole number": ([], ["max_steps=1.5"], "max_steps must be a whole number", ""),
    "not a boolean": ([], ["packing=maybe"], "packing must be a true or false", ""),
    "derived field": ([], ["gradient_accumulation_steps=4"], "gradient_accumulation_steps cannot be set", "batch_size"),
    "warm-up of all steps": ([], ["warmup_ratio=1"], "warmup_ratio (--warmup-ratio) is a share of all steps", ""),
    "negative lr": ([], ["learning_rate=-1"], "must be positive", ""),
    "infinite lr": ([], ["learning_rate=inf"], "learning_rate must be a number", ""),
    "empty required": ([], ["learning_rate=null"], "learning_rate cannot be empty", ""),
    "bad dtype": ([], ["dtype=int8"], "--dtype must be one of", ""),
    "bad format": ([], ["format=chatml"], "--format must be one of", ""),
    "resume by path": ([], ["resume_from_checkpoint=runs/x/checkpoint-2"], "cannot be set", "--resume"),
    "zero checkpoints kept": (
        [],
        ["save_total_limit=0"],
        "save_total_limit (--save-total-limit) must be at least 1",
        "",
    ),
}


@pytest.mark.parametrize("name", list(BAD_RECIPES))
def test_bad_recipe_values_are_one_sentence(name):
    flags, sets, words, more = BAD_RECIPES[name]
    with pytest.raises(UserError) as caught:
        build(None, dict(flags), sets)
    assert words in str(caught.value) and more in str(caught.value)


@pytest.mark.parametrize(
    "content, words",
    [
        ("- a\n- b\n", "must be a mapping"),
        ("lr: [unclosed\n", "is not valid YAML"),
        ("learning_rate: {a: 1}\n", "learning_rate must be a number"),
    ],
)
def test_bad_recipe_files_are_one_sentence(tmp_path, content, words):
    path = tmp_path / "r.yaml"
    path.write_text(content)
    with pytest.raises(UserError, match=words):
        build(str(path))
    with pytest.raises(UserError, match="does not exist"):
        build(str(tmp_path / "missing.yaml"))


def test_global_batch_must_divide(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert accumulation_steps(TrainConfig(batch_size=16, sft={"per_device_train_batch_size": 2})) == 2
    with pytest.raises(UserError, match="not a multiple"):
        accumulation_steps(TrainConfig(batch_size=16, sft={"per_device_train_batch_size": 3}))


def test_bad_training_input_is_one_sentence(tmp_path, s1k_file):
    run = s1("train", "--data", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o"))
    assert run.returncode == 1 and "does not exist" in run.stderr and "Traceback" not in run.stderr
    run = s1("train", "--data", str(tmp_path / "x.jsonl"), "--long-sequences", "chop")
    assert run.returncode == 1 and "--long-sequences" in run.stderr
    # a value only TrainingArguments itself can judge, refused before any training
    run = s1(
        "train",
        "--data",
        str(s1k_file),
        "--output",
        str(tmp_path / "o"),
        "--set",
        "save_strategy=sometimes",
        "--max-steps",
        "1",
    )
    assert run.returncode == 1 and "training recipe is not valid" in run.stderr and "Traceback" not in run.stderr


def test_bad_training_files_and_combinations_are_one_sentence(tiny_dir, s1k_file, tmp_path):
    empty, broken = tmp_path / "empty.jsonl", tmp_path / "broken.jsonl"
    empty.write_text("")
    broken.write_text(s1k_file.read_text().splitlines()[0] + "\n{not json\n")
    cases = [
        (["--data", str(empty)], "holds no records"),
        (["--data", str(broken)], "Line 2 of"),
        (["--data", str(s1k_file), "--set", "eval_strategy=steps"], "training recipe cannot run"),  # no eval set
        (["--data", str(s1k_file), "--set", "use_liger_kernel=true"], "needs a package that is not installed"),
    ]
    for args, words in cases:
        run = s1("train", "--model", str(tiny_dir), "--output", str(tmp_path / "o"), "--max-steps", "1", *args)
        assert run.returncode == 1 and words in run.stderr and "Traceback" not in run.stderr, (args, run.stderr[-2000:])


def test_killed_run_resumes_on_the_same_loss_curve(tiny_dir, s1k_file, single_run, tmp_path):
    """SIGKILL after a checkpoint, then --resume: the same 8 losses and the same final weights as never stopping."""
    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "s1", *tiny_run(tiny_dir, s1k_file, out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while (
            not (out / "checkpoint-2" / "trainer_state.json").exists()
            and proc.poll() is None
            and time.time() < deadline
        ):
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / "final").exists(), "the run finished before it could be killed"
    again = s1(*tiny_run(tiny_dir, s1k_file, out))  # without --resume: refused, the checkpoints kept
    assert again.returncode == 1 and "pass --resume" in again.stderr and "Traceback" not in again.stderr
    (out / "checkpoint-99").mkdir()  # a save cut short: no trainer_state.json, so not a checkpoint to resume from
    resumed = s1(*tiny_run(tiny_dir, s1k_file, out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((out / "ranks" / "rank-0.json").read_text())
    reference = json.loads((single_run / "ranks" / "rank-0.json").read_text())
    assert record["first_step"] >= 2 and record["global_step"] == 8
    assert record["losses"] == pytest.approx(reference["losses"], rel=1e-5)
    for name, tensor in weights(single_run / "final").items():
        assert tensor.allclose(weights(out / "final")[name], atol=1e-6), name
    assert "resuming from checkpoint-99" not in resumed.stdout
    assert len([p for p in out.glob("checkpoint-*") if p.name != "checkpoint-99"]) <= 2  # save_total_limit


def test_fsdp_on_two_processes_saves_a_model_both_engines_load(tiny_dir, s1k_file, single_run, tmp_path):
    """The shipped FSDP2 config on two CPU processes: lean loading, FSDP's activation checkpointing, sharded
    checkpoints, and a consolidated final model equal to the single-process one."""
    out = tmp_path / "fsdp"
    launcher = [
        *ACCELERATE,
        "--config_file",
        str(ROOT / "configs/accelerate/fsdp.yaml"),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        "29533",
        "-m",
        "s1",
    ]
    run = s1(*tiny_run(tiny_dir, s1k_file, out), launcher=launcher)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [(r["kind"], r["sharded"], r["activation_checkpointing"]) for r in ranks] == [("fsdp", True, "fsdp")] * 2
    assert [r["weights"] for r in ranks] == ["read from disk", "broadcast from rank 0"]
    assert ranks[0]["fingerprint"] != ranks[1]["fingerprint"]  # each holds its own shard
    reference = json.loads((single_run / "ranks" / "rank-0.json").read_text())
    assert ranks[0]["losses"] == pytest.approx(reference["losses"], rel=1e-4)
    assert any((out / "checkpoint-8").glob("pytorch_model_fsdp_0/*.distcp"))  # sharded, as resuming needs

    final = out / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    for name, tensor in weights(single_run / "final").items():
        assert tensor.allclose(weights(final)[name], atol=1e-4), name
    tokens = {}
    for engine in ("hf", "reprefill"):
        gen = s1(
            "generate",
            "--model",
            str(final),
            "--engine",
            engine,
            "--max-thinking-tokens",
            "12",
            "--max-answer-tokens",
            "8",
            "--json",
            "What is 9*11?",
        )
        assert gen.returncode == 0, gen.stderr[-2000:]
        tokens[engine] = json.loads(gen.stdout)["output_token_ids"]
    assert tokens["hf"] == tokens["reprefill"] and len(tokens["hf"]) > 12


def test_two_processes_train_the_same_model(tiny_dir, s1k_file, tmp_path):
    out = tmp_path / "ddp"
    launcher = [
        *ACCELERATE,
        "--config_file",
        str(ROOT / "configs/accelerate/cpu_2proc.yaml"),
        "--main_process_port",
        "29531",
        "-m",
        "s1",
    ]
    run = s1(
        "train",
        "--model",
        str(tiny_dir),
        "--data",
        str(s1k_file),
        "--output",
        str(out),
        "--max-steps",
        "4",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--block-size",
        "256",
        launcher=launcher,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [(r["world_size"], r["kind"]) for r in ranks] == [(2, "ddp"), (2, "ddp")]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 4
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the logged loss is the mean over both processes
    assert ranks[0]["fingerprint"] == ranks[1]["fingerprint"]


@pytest.mark.slow
def test_sixteen_steps_on_the_embedded_model_learn_and_budget_force(embedded, s1k_file, tmp_path):
    out = tmp_path / "run"
    run = s1(
        "train",
        "--model",
        "smollm2",
        "--data",
        str(s1k_file),
        "--output",
        str(out),
        "--max-steps",
        "16",
        "--batch-size",
        "2",
        "--lr",
        "1e-4",
        "--block-size",
        "512",
        "--save-steps",
        "16",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    losses = json.loads((out / "ranks" / "rank-0.json").read_text())["losses"]
    assert len(losses) == 16
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    final = out / "final"
    assert "<|im_start|>think" in (final / "chat_template.jinja").read_text()
    gen = s1(
        "generate",
        "--model",
        str(final),
        "--max-thinking-tokens",
        "12",
        "--max-answer-tokens",
        "16",
        "--json",
        "What is 9*11?",
    )
    assert gen.returncode == 0, gen.stderr
    record = json.loads(gen.stdout)
    assert record["prompt"].endswith("<|im_start|>assistant\n<|im_start|>think")
    assert record["prompt"].count("<|im_start|>think") == 1
    assert record["thinking_tokens"] <= 12 and record["answer"]


def test_the_ranks_that_do_not_read_weights_build_the_same_model(embedded):
    """What FSDP's other ranks hold before sharding: the same parameters, tied the same way (SmolLM2 ties its head)."""
    from s1.core.models import empty_model

    empty, loaded = empty_model("smollm2", "float32"), embedded[0]
    assert [(n, p.shape) for n, p in empty.named_parameters()] == [(n, p.shape) for n, p in loaded.named_parameters()]
    assert empty.lm_head.weight is empty.model.embed_tokens.weight
    assert all(p.device.type == "cpu" for p in empty.parameters())  # not meta: accelerate maps them by data pointer


def test_jsonl_lines_hold_any_unicode(tmp_path):
    """Records written with ensure_ascii=False may carry U+2028 inside a string: still one record per line."""
    from s1.train.data import load_records

    path = tmp_path / "u.jsonl"
    record = {"question": "a\u2028b", "thinking": "t\u0085", "answer": "1"}
    path.write_text("\ufeff" + json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_records(str(path)) == [record]


def test_a_json_file_is_read_by_the_one_reader_and_never_loses_text(tmp_path):
    """Through `datasets`, a .json array silently dropped a lone surrogate ("a\\ud800b" became "ab"); now it is
    read as eval reads it: an array or JSON lines, a byte-order mark accepted, a lone surrogate refused by record."""
    from s1 import UserError
    from s1.train.data import load_records

    record = {"question": "a\u2028b", "thinking": "t", "answer": "1"}
    array, lines = tmp_path / "a.json", tmp_path / "l.json"
    array.write_text("\ufeff" + json.dumps([record], ensure_ascii=False), encoding="utf-8")
    lines.write_text(json.dumps(record) + "\n" + json.dumps({**record, "answer": "2"}) + "\n")
    assert load_records(str(array)) == [record]
    assert [r["answer"] for r in load_records(str(lines))] == ["1", "2"]
    array.write_text('[{"question": "a\\ud800b", "thinking": "t", "answer": "1"}]')
    with pytest.raises(UserError, match="Record 1 of .*a.json holds a lone UTF-16 surrogate .* field 'question'"):
        load_records(str(array))


def test_a_resume_with_other_settings_says_which(tmp_path, capsys):
    from trl import SFTConfig

    from s1.train.trainer import note_recipe

    def args(**values):
        return SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **values)

    config = build()
    note_recipe(tmp_path, config, args(learning_rate=1e-3, max_steps=4), resuming=False)
    note_recipe(tmp_path, config, args(learning_rate=1e-3, max_steps=8), resuming=True)
    assert "changed settings" not in capsys.readouterr().out  # more steps is what resuming is for
    note_recipe(tmp_path, config, args(learning_rate=2e-3, max_grad_norm=0.1, max_steps=8), resuming=True)
    said = capsys.readouterr().out
    assert "learning_rate 0.001 -> 0.002" in said and "max_grad_norm 1.0 -> 0.1" in said


def test_mixed_precision_trains_fp32_master_weights(tiny_dir):
    """Read in bf16 (half the memory), trained in fp32 under autocast: lr 1e-5 steps would round away in bf16."""
    import torch

    from s1.train.trainer import load_model

    model, how = load_model(str(tiny_dir), torch.bfloat16, mixed=True)
    assert how == "read from disk" and {p.dtype for p in model.parameters()} == {torch.float32}
    model, _ = load_model(str(tiny_dir), torch.bfloat16, mixed=False)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def _digests(directory: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_resuming_a_finished_run_is_a_no_op_that_says_so(tiny_dir, s1k_file, single_run, tmp_path):
    """It used to train one step past the last and rewrite final/ (a 1-step run became 2 steps)."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(single_run, out)
    before, record = _digests(out / "final"), (out / "ranks" / "rank-0.json").read_bytes()
    again = s1(*tiny_run(tiny_dir, s1k_file, out), "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished (8 of 8 steps)" in again.stdout and "nothing to resume" in again.stdout
    assert _digests(out / "final") == before and (out / "ranks" / "rank-0.json").read_bytes() == record
    assert sorted(p.name for p in out.glob("checkpoint-*")) == sorted(p.name for p in single_run.glob("checkpoint-*"))


def test_a_finished_run_without_its_checkpoints_is_neither_retrained_nor_resumed(
    tiny_dir, s1k_file, single_run, tmp_path
):
    """Checkpoints deleted to save space: training the same --output again used to start over and replace final/."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(single_run, out, ignore=shutil.ignore_patterns("checkpoint-*"))
    before = _digests(out / "final")
    again = s1(*tiny_run(tiny_dir, s1k_file, out))
    assert again.returncode == 1 and "already holds a finished training run" in again.stderr, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    resumed = s1(*tiny_run(tiny_dir, s1k_file, out), "--resume")
    assert resumed.returncode == 0 and "already finished" in resumed.stdout, resumed.stderr[-3000:]
    assert _digests(out / "final") == before and not list(out.glob("checkpoint-*"))


def test_a_run_killed_after_its_last_checkpoint_writes_final_without_another_step(
    tiny_dir, s1k_file, single_run, tmp_path
):
    """The last checkpoint is complete but final/ is not: resuming writes final/ from it, at the same step."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(single_run, out)
    shutil.rmtree(out / "final")
    resumed = s1(*tiny_run(tiny_dir, s1k_file, out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((out / "ranks" / "rank-0.json").read_text())
    assert record["global_step"] == record["first_step"] == 8
    assert not (out / "checkpoint-9").exists()
    for name, tensor in weights(single_run / "final").items():
        assert tensor.equal(weights(out / "final")[name]), name
    assert not [p for p in out.iterdir() if p.name.startswith(".final")], "a partial final directory was left"


def test_a_second_run_on_the_same_output_is_refused_while_the_first_trains(tiny_dir, s1k_file, tmp_path):
    """There was no lock: two runs on one --output both exited 0 and left a mixed recipe.json and final/."""
    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "s1",
            *tiny_run(tiny_dir, s1k_file, out, "--max-steps", "100000", "--save-steps", "100000"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = out / ".lock"
        while first.poll() is None and not (lock.exists() and lock.read_text() == f"pid {first.pid}"):
            time.sleep(0.05)  # waiting for an event (the first run holding the lock), not for time to pass
        assert first.poll() is None, "the first run ended before it held the lock"
        second = s1(*tiny_run(tiny_dir, s1k_file, out, "--lr", "5e-3"))
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr[-2000:]
        assert f"Another s1 train (pid {first.pid}) is writing to {out}" in second.stderr
        assert first.poll() is None, "the first run was disturbed"
    finally:
        first.kill()
        first.wait()
    recipe = json.loads((out / "recipe.json").read_text()) if (out / "recipe.json").exists() else {}
    assert recipe.get("learning_rate") != 5e-3, "the refused run wrote its recipe"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to leave one free")
def test_training_takes_one_thread_when_another_process_keeps_a_core_busy(tiny_dir, s1k_file, tmp_path):
    """On two cores with another process busy on one, torch's default two threads trained 15x slower than one
    (they wait for each other at every operator). The run is pinned to two CPUs and a spinning process to the
    second: training chooses one thread (engines/threads.py) and records the choice."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    spinner = subprocess.Popen(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpus[1]}}})\nwhile True: pass"]
    )
    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("OMP_NUM_THREADS", None)
    try:
        run = subprocess.run(
            ["taskset", "-c", ",".join(map(str, cpus)), sys.executable, "-m", "s1"]
            + tiny_run(tiny_dir, s1k_file, out, "--max-steps", "2"),
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=900,
        )
    finally:
        spinner.kill()
        spinner.wait()
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((out / "ranks" / "rank-0.json").read_text())
    assert record["threads"][0] == [0, 1], record["threads"]


def test_a_checkpoint_the_disk_refuses_is_one_sentence_and_the_run_continues_after(tiny_dir, s1k_file, tmp_path):
    """Past `ulimit -f` (the portable stand-in for a full disk) safetensors fails mid-checkpoint: one sentence,
    not a SafetensorError traceback; run again, it finishes with a whole final/."""
    import resource

    out = tmp_path / "run"

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = tiny_run(tiny_dir, s1k_file, out, "--max-steps", "2")
    failed = subprocess.run(
        [sys.executable, "-m", "s1", *args], capture_output=True, text=True, env=env, cwd=ROOT, preexec_fn=limited
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert f"Cannot write {out}: the file size limit (ulimit -f) was reached" in failed.stderr
    assert not (out / "final").exists()
    again = s1(*args, *(["--resume"] if newest_checkpoint(out) else []))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "final" / "s1_train.json").exists()
