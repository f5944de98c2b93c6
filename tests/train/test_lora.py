"""LoRA through PEFT with TRL's names: a few steps on the embedded model save an adapter and a merged model,
and both load and budget-force like any model directory."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from tests.train.test_train import s1

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def s1k_file(tmp_path_factory):
    """Eight s1K-format records (question, thinking_trajectories, attempt) made for the test."""
    path = tmp_path_factory.mktemp("data") / "s1k.jsonl"
    rows = [
        {"question": f"What is {a}*7?", "thinking_trajectories": [f"{a} times 7 is {a * 7}."], "attempt": f"{a * 7}"}
        for a in range(3, 11)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def generate(model) -> dict:
    run = s1(
        "generate", "--model", str(model), "--max-thinking-tokens", "8", "--max-answer-tokens", "8", "--json",
        "What is 9*11?",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.mark.slow
def test_lora_steps_save_an_adapter_and_a_merged_model_that_both_budget_force(embedded, s1k_file, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    run = s1(
        "train", "--model", "smollm2", "--data", str(s1k_file), "--output", str(out), "--max-steps", "3",
        "--batch-size", "2", "--lr", "1e-3", "--block-size", "256", "--save-steps", "3", "--use-peft",
        "--lora-r", "8", "--lora-alpha", "16", "--lora-target-modules", "q_proj,v_proj",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    adapter, final = out / "adapter", out / "final"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    lora = load_file(adapter / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())  # B starts at zero
    # the merged model: the wrapped projections moved, every other weight is the base model's
    base = load_file(f"{config['base_model_name_or_path']}/model.safetensors")
    merged = load_file(final / "model.safetensors")
    assert not any("lora" in k for k in merged)
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not merged[key].float().allclose(base[key].float())
    key = "model.layers.0.mlp.up_proj.weight"
    assert merged[key].float().allclose(base[key].float())
    # both load through the same loader and budget-force; greedy, they write the same tokens
    from_adapter, from_merged = generate(adapter), generate(final)
    for record in (from_adapter, from_merged):
        assert record["thinking_tokens"] <= 8 and record["answer"]
        assert record["prompt"].endswith("<|im_start|>assistant\n<|im_start|>think")
    assert from_adapter["output_token_ids"] == from_merged["output_token_ids"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--lora-r", "0"], "lora_r must be at least 1"),
        (["--lora-dropout", "1.5"], "lora_dropout from 0 up to 1"),
    ],
)
def test_bad_lora_values_are_one_sentence(tmp_path, s1k_file, args, words):
    run = s1("train", "--data", str(s1k_file), "--output", str(tmp_path / "o"), "--use-peft", *args)
    assert run.returncode == 1 and words in run.stderr and "Traceback" not in run.stderr


def test_peft_is_pinned_in_the_projects_extras():
    """peft installs from the project's own files (scripts/setup.sh --dev installs [dev]), at one exact version."""
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert [d for d in extras["lora"] if d.startswith("peft")] == [d for d in extras["dev"] if d.startswith("peft")]
    assert extras["lora"][0].startswith("peft==")
