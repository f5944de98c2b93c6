"""The paper's own methods, exactly (issue 29): the class-conditional prompts verbatim, Control by Eq. 1 on
each setting's mean thinking (strict per-sample control beside it), rejection sampling that draws until the
sample fits, and REBASE answering by majority vote."""

from __future__ import annotations

import json

import pytest

from s1.core.errors import UserError
from s1.engines.hf import HFEngine
from s1.evaluate.config import EvalConfig, context_hash, sample_identity
from s1.evaluate.methods import METHODS, SearchSpec
from s1.evaluate.records import SampleRecord
from s1.evaluate.summary import summarize
from tests.evaluate.test_evaluate import evaluate, lines

SHORT = "Answer after a short amount of thinking. Do not spend excessive time double-checking your work."
LONG = (
    "Answer after a long amount of thinking. If you feel like you are finished early, spend the extra time trying "
    "to double-check your work until you are absolutely sure that you have the correct answer."
)


def test_class_conditional_prompts_are_the_papers_strings_after_two_newlines():
    config = EvalConfig(methods=["class_conditional", "class_conditional+bf"], max_thinking_tokens=[512, 2048])
    prompts = {(s.method, s.label): s.prompt("What is 1+1?") for s in config.settings()}
    assert prompts[("class_conditional", "short")] == "What is 1+1?\n\n" + SHORT
    assert prompts[("class_conditional", "long")] == "What is 1+1?\n\n" + LONG
    assert prompts[("class_conditional+bf", "long cap=2048")] == "What is 1+1?\n\n" + LONG
    assert prompts[("class_conditional", "default")] == "What is 1+1?"


# Mean thinking tokens per setting, constructed to realise the paper's Appendix bookkeeping (TCC 2 of 5 settings
# in control, SCC 3 of 5, CCC 1 of 2; each 5 of 5 / 2 of 2 with budget forcing). Every setting's samples spread
# around the mean so that some sample leaves the bounds even where the mean keeps them: the strict per-sample
# figure must differ from the paper's.
BUDGETS = [1024, 2048, 4096, 8192, 16384]
MEANS = {
    "token_conditional": [7939, 7158, 8263, 7108, 7500],  # only 8192 and 16384 hold their means: 2/5
    "token_conditional+bf": [1024, 2000, 3956, 5497, 6506],
    "step_conditional": [2600, 4200, 6100, 7100, 7400],  # 64, 128, 256 steps x 100 tokens hold theirs: 3/5
    "step_conditional+bf": [1600, 3200, 6100, 7100, 7400],
    "class_conditional": {"default": 6000, "short": 7000, "long": 9000},  # long above the default, short not: 1/2
    "class_conditional+bf": {"default": 6000, "short cap=1024": 1000, "long cap=16384": 9000},
}


def _records(config: EvalConfig, problems, means: dict[tuple[str, str], int]) -> dict:
    """Two samples per problem and setting, `mean - spread` and `mean + spread` thinking tokens (half correct)."""
    context = context_hash(config)
    records = {}
    for s in config.settings():
        mean = means[(s.method, s.label)]
        for p in problems:
            for k, tokens in enumerate((mean - 40, mean + 40) if mean > 1024 else (mean, mean)):
                identity = sample_identity(context, s, p, k)
                records[identity] = SampleRecord(
                    identity=identity, context=context, benchmark="b", id=p.id, method=s.method, setting=s.label,
                    sample=k, setting_spec=s.spec(), problem_hash=p.content_hash(), seed=k, prompt="", output="",
                    thinking_tokens=tokens, answer_tokens=1, extensions_used=0, capped=False, finish_reason="stop",
                    gold=p.answer, kind=p.kind, tries=1, fits=True, seconds=0.0, correct=k == 0,
                )  # fmt: skip
    return records


def test_control_is_eq1_on_each_settings_mean_as_in_the_papers_appendix():
    from s1.data.benchmarks import Problem

    config = EvalConfig(
        methods=list(MEANS),
        max_thinking_tokens=BUDGETS,
        steps=[16, 32, 64, 128, 256],
        tokens_per_step=100,
        samples=2,
        temperature=1.0,
    )
    means = {}
    for method, table in MEANS.items():
        labels = [s.label for s in config.settings() if s.method == method]
        means.update(
            {(method, label): table[label] if isinstance(table, dict) else table[i] for i, label in enumerate(labels)}
        )
    problems = [Problem(id=str(i), question=f"q{i}", answer="1", kind="math") for i in range(3)]
    summary = summarize(config, config.settings(), {"b": problems}, _records(config, problems, means))
    metrics = summary.benchmarks["b"].methods
    control = {m: metrics[m].control for m in MEANS}
    assert control == {
        "token_conditional": 40.0,
        "token_conditional+bf": 100.0,
        "step_conditional": 60.0,
        "step_conditional+bf": 100.0,
        "class_conditional": 50.0,
        "class_conditional+bf": 100.0,
    }
    # strict control: each setting above 1,024 has a sample 40 tokens over its mean, out of bounds where the mean
    # sits on the bound: SCC+BF's 16 and 32 steps (means 1600, 3200) hold their means but not every sample.
    assert metrics["token_conditional"].strict_control == 40.0
    assert metrics["step_conditional+bf"].strict_control == 60.0
    assert metrics["class_conditional"].strict_control is None  # no per-sample bound to keep
    text = "\n".join(summary.notes)
    assert "Control: the paper's Eq. 1" in text and "strict control:" in text


@pytest.fixture
def problems_file(tmp_path, data_dir):
    """Four real MATH500 problems as a generic JSONL file."""
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines()[:4]]
    path = tmp_path / "twelve.jsonl"
    path.write_text(
        "".join(json.dumps({"id": r["unique_id"], "problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows)
    )
    return path


def test_rejection_sampling_draws_until_the_sample_fits_and_counts_tries(tmp_path, tiny, problems_file):
    """The tiny model rarely ends thinking within 6 tokens: unbounded, every sample is drawn until it fits;
    bounded at 2 tries, the samples that never fit are recorded, shown and left out of accuracy."""
    common = dict(
        data=str(problems_file), limit=4, model="tiny", methods=["rejection_sampling"], max_thinking_tokens=[6],
        max_answer_tokens=2, seed=0,
    )  # fmt: skip
    engine = HFEngine(*tiny)
    summary = evaluate(EvalConfig(**common), str(tmp_path / "free"), engine=engine, show_progress=False)
    records = lines(tmp_path / "free")
    assert len(records) == 4 and all(r["fits"] and r["thinking_tokens"] <= 6 for r in records)
    assert max(r["tries"] for r in records) > 2, "a budget the model rarely meets needs more than two draws"
    row = summary["benchmarks"]["twelve"]["settings"][0]
    assert row["unfit"] == 0 and row["mean_tries"] == sum(r["tries"] for r in records) / 4
    assert summary["benchmarks"]["twelve"]["methods"]["rejection_sampling"]["control"] == 100.0
    # the draws that did not fit are the method's cost: the compute table counts them
    assert all((r["rejected_tokens"] > 0) == (r["tries"] > 1) for r in records)
    spent = sum(r["rejected_tokens"] + r["output_tokens"] for r in records)
    assert row["compute"]["generated"] == row["compute"]["generated_alone"] == spent / 4
    assert row["compute"]["prompt"] == sum(r["rejected_prefill_tokens"] + r["prefill_tokens"] for r in records) / 4

    bounded = evaluate(EvalConfig(**common, max_tries=2), str(tmp_path / "two"), engine=engine, show_progress=False)
    records = lines(tmp_path / "two")
    unfit = [r for r in records if not r["fits"]]
    assert unfit and all(r["tries"] == 2 and r["thinking_tokens"] > 6 for r in unfit)
    assert all(r["tries"] <= 2 for r in records)
    row = bounded["benchmarks"]["twelve"]["settings"][0]
    assert row["unfit"] == len(unfit) and row["samples"] == 4
    fitting = [r for r in records if r["fits"]]
    expected = 100.0 * sum(r["correct"] for r in fitting) / len(fitting) if fitting else float("nan")
    assert row["accuracy"] == expected or (row["accuracy"] != row["accuracy"] and expected != expected)
    text = (tmp_path / "two" / "summary.md").read_text()
    assert f"| rejection_sampling | tokens=6 | {row['mean_tries']:.1f} | {len(unfit)} |" in text


def test_rejection_sampling_bound_is_refused_below_one():
    with pytest.raises(UserError, match="--max-tries must be at least 1"):
        EvalConfig(methods=["rejection_sampling"], max_thinking_tokens=[8], max_tries=0).settings()


def test_rebase_answers_by_majority_vote_by_default_and_weighted_on_request():
    assert SearchSpec(4).vote == "majority"
    setting = EvalConfig(methods=["rebase"], reward_model="x:y", widths=[4]).settings()[0]
    classes, rewards = [0, 1, 1, None], [0.9, 0.1, 0.2, 1.0]
    assert METHODS["rebase"].pick(setting, classes, rewards) == 1  # two votes for class 1 beat one
    weighted = EvalConfig(methods=["rebase"], reward_model="x:y", widths=[4], rebase_vote="weighted").settings()[0]
    assert METHODS["rebase"].pick(weighted, classes, rewards) == 0  # 0.9 > 0.1 + 0.2
    assert json.dumps(setting.spec()) != json.dumps(weighted.spec()), "the vote is part of the setting's identity"


def test_answers_cut_by_a_token_limit_are_counted_per_setting_in_the_summary(tmp_path, tiny_dir):
    """Item 7 of issue 29: a small answer budget cuts answers, counted per setting in summary.json, shown in
    summary.md, `s1 report` and eval's closing line; a --max-tokens cut inside the thinking is no cut answer."""
    from typer.testing import CliRunner

    from s1.cli.common import app
    from s1.report.compare import compare
    from s1.report.html import render

    data = tmp_path / "three.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "question": f"What is {i}+1?", "answer": str(i + 1)}) + "\n"
                            for i in range(3)))  # fmt: skip
    common = ["eval", "--model", str(tiny_dir), "--data", str(data), "--device", "cpu"]
    cut_run = tmp_path / "cut"
    result = CliRunner().invoke(
        app, common + ["--max-thinking-tokens", "6", "--max-answer-tokens", "2", "--output", str(cut_run)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    records = lines(cut_run)
    cut = [r for r in records if r["finish_reason"] == "length"]
    assert cut and all(r["answer_tokens"] == 2 for r in cut), "the answer budget stopped them"
    row = json.loads((cut_run / "summary.json").read_text())["benchmarks"]["three"]["settings"][0]
    assert row["cut_answers"] == len(cut) and row["samples"] == 3
    note = "cut answers: samples whose answer a token limit stopped before it ended"
    assert any(n.startswith(note) for n in json.loads((cut_run / "summary.json").read_text())["notes"])
    assert f"| budget_forcing | cap=6 wait=0 | {len(cut)} of 3 samples |" in (cut_run / "summary.md").read_text()
    assert f"three budget_forcing cap=6 wait=0: {len(cut)} of 3 samples" in " ".join(result.stderr.split())
    assert f" tok, {len(cut)} cut) |" in compare([str(cut_run)], tmp_path / "r.png")
    assert "<th>answers cut</th>" in render([str(cut_run)]) and f"<td>{len(cut)} of 3 samples</td>" in render(
        [str(cut_run)]
    )

    # thinking stopped by --max-tokens before any answer (a minimum keeps it thinking past 4 tokens): finish reason
    # length, but no answer was cut
    thinking_run = tmp_path / "thinking"
    limits = ["--min-thinking-tokens", "8", "--max-tokens", "4"]
    result = CliRunner().invoke(app, common + limits + ["--output", str(thinking_run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    records = lines(thinking_run)
    assert all(r["finish_reason"] == "length" and r["answer_tokens"] == 0 for r in records)
    row = json.loads((thinking_run / "summary.json").read_text())["benchmarks"]["three"]["settings"][0]
    assert row["cut_answers"] == 0
    assert "answers cut" not in (thinking_run / "summary.md").read_text() and "Answers cut" not in result.stderr
    assert " cut) |" not in compare([str(thinking_run)], tmp_path / "r.png")
    assert "answers cut" not in render([str(thinking_run)])


def test_a_thinking_grace_is_in_the_label_and_control_holds_against_cap_plus_grace():
    from s1.data.benchmarks import Problem
    from s1.evaluate.methods import Setting

    methods = ["budget_forcing", "token_conditional+bf", "token_conditional", "no_thinking", "rejection_sampling"]
    config = EvalConfig(methods=methods, max_thinking_tokens=[64, 128], thinking_grace_tokens=16)
    settings = {(s.method, s.label): s for s in config.settings()}
    assert {label for method, label in settings if method == "budget_forcing"} == {
        "cap=64 wait=0 grace=16",
        "cap=128 wait=0 grace=16",
    }
    assert settings["budget_forcing", "cap=64 wait=0 grace=16"].bounds == (0, 80)
    assert settings["token_conditional+bf", "tokens=64 grace=16"].bounds == (0, 80)
    assert settings["token_conditional", "tokens=64 grace=16"].bounds == (0, 64)  # stated, not enforced: no grace
    # no thinking has no cap to finish a line at, and rejection sampling's cap only detects a draw that is over
    assert settings["no_thinking", "no thinking"].forcing.thinking_grace_tokens == 0
    assert settings["rejection_sampling", "tokens=64"].forcing.thinking_grace_tokens == 0
    graced = settings["budget_forcing", "cap=64 wait=0 grace=16"]
    assert graced.spec()["forcing"]["thinking_grace_tokens"] == 16 and Setting.from_spec(graced.spec()) == graced
    assert "thinking_grace_tokens" not in settings["no_thinking", "no thinking"].spec()["forcing"]
    # nor do plain answers drawn for a vote, or cap 0 (no thinking): no grace in their labels or identities
    plain = EvalConfig(
        methods=["majority+no_thinking", "budget_forcing"],
        max_thinking_tokens=[0],
        samples=4,
        temperature=1.0,
        thinking_grace_tokens=16,
    ).settings()
    assert [s.label for s in plain] == ["n=4 no thinking", "cap=0 wait=0"]
    assert all(s.forcing.thinking_grace_tokens == 0 for s in plain)

    means = {key: 72 if "64" in key[1] else 150 for key in settings}  # 72 <= 64 + 16; 150 > 128 + 16
    means["no_thinking", "no thinking"] = 10
    problems = [Problem(id=str(i), question=f"q{i}", answer="1", kind="math") for i in range(2)]
    summary = summarize(config, config.settings(), {"b": problems}, _records(config, problems, means))
    metrics = summary.benchmarks["b"].methods
    assert metrics["budget_forcing"].control == 50.0 and metrics["token_conditional+bf"].control == 50.0
    assert metrics["token_conditional"].control == 0.0  # 72 > 64: the stated budget, no grace
    assert "cap + N" in "\n".join(summary.notes)
