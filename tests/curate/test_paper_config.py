"""configs/curate/paper.yaml is the paper's curation: its 16 sources, its pre-selection, s1's own prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s1.curate import load_config
from s1.curate.difficulty import _fill
from s1.curate.diversity import domain_lines, load_domains
from tests.conftest import DATA

PAPER = Path(__file__).resolve().parents[2] / "configs/curate/paper.yaml"

FIGURE_8 = (
    "You are an AI assistant for grading a science problem.\n"
    "The user will provide you with the question itself, an attempt made by a student and the correct answer to "
    "the problem.\n"
    "Your job is to judge whether the attempt is correct by comparing it with the correct answer. \n"
    "If the expected solution concludes with a number or choice, there should be no ambiguity.\n"
    "If the expected solution involves going through the entire reasoning process, you should judge the attempt "
    "based on whether the reasoning process is correct with correct answer if helpful.\n\n"
    "The user will provide the attempt and the correct answer in the following format:\n\n"
    "# Problem\n{problem}\n\n## Attempt\n{attempt}\n\n## Correct answer\n{solution}\n\n"
    'Explain your reasoning, and end your response on a new line with only "Yes" or "No" (without quotes).'
)
"""The paper's Figure 8 grading prompt, as s1's data/grading.txt holds it (trailing space on line 3 included)."""


def test_the_paper_config_lists_the_16_sources_and_preselects_aime_and_gpqa():
    config = load_config(PAPER)
    names = [s.name for s in config.sources]
    assert len(names) == 16 == len(set(names))
    assert {"NuminaMath", "MATH", "OlympicArena", "OmniMath", "AGIEval", "xword", "OlympiadBench", "TheoremQA"} < set(
        names
    )
    assert {"USACO", "JEEBench", "GPQA", "SciEval", "s1-prob", "LiveCodeBench", "s1-teasers", "AIME"} < set(names)
    pre = config.selection.preselect
    assert (pre.sources, pre.long_sources, pre.min_trace_tokens) == (["AIME", "GPQA"], ["MATH"], 5600)
    assert set(config.selection.benchmark_mix) <= set(names)  # the notebook strategy's mix names real sources


def test_the_solvers_get_the_bare_question_at_temperature_005():
    config = load_config(PAPER)
    assert [s.model for s in config.roles.solvers] == ["Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-32B-Instruct"]
    for solver in config.roles.solvers:
        assert (solver.prompt, solver.system, solver.temperature, solver.max_tokens) == (
            "{question}",
            None,
            0.05,
            32768,
        )
    assert config.roles.teacher.prompt == "{question}"


def test_the_judge_is_figure_8_and_reads_the_attempt_as_s1_wrote_it():
    config = load_config(PAPER)
    judge = config.roles.judge
    assert judge.system == FIGURE_8  # the placeholders in it stay literal, as in s1's system message
    message = _fill(judge.prompt, question="What is 1+1?", solution="2", attempt="It is 2.")
    assert message == "## Problem\nWhat is 1+1?\n\n## Attempt\nIt is 2.\n\n## Correct answer\n2"
    assert config.short_answer_chars == 0  # the paper's judge graded every attempt


def test_the_classifier_gets_s1s_rubrics_separated_by_blank_lines(tmp_path):
    config = load_config(PAPER)
    config.domains = str(DATA / "msc.json")
    domains = load_domains(config)
    rubrics = domain_lines(domains, config.domain_details)
    prompts = [d["prompt"] for d in json.loads((DATA / "msc.json").read_text())]
    assert rubrics == "\n\n".join(prompts)
    message = config.roles.classifier.prompt.replace("{domains}", rubrics).replace("{question}", "Q?")
    assert message == f"## Question\nQ?\n\n## Classification rubrics\n{rubrics}"
    assert config.roles.classifier.system.endswith(
        "end your response on a new line with two-digit code of the subject that the question belongs to."
    )


TABLE_2 = {p.stem.removeprefix("table2-"): p for p in sorted((PAPER.parents[1] / "paper").glob("table2-*.yaml"))}


def test_each_table2_recipe_is_the_paper_config_with_its_ablation():
    """Table 2's data ablations are configs/curate/paper.yaml with only the selection strategy (and the output)
    changed, through `extends`: nothing else may drift from the paper's curation."""
    assert set(TABLE_2) == {"random", "diverse", "longest", "full"}
    paper = load_config(PAPER).model_dump()
    for strategy, path in TABLE_2.items():
        ablation = load_config(path).model_dump()
        assert ablation["selection"]["strategy"] == strategy
        assert ablation["output"] == f"runs/paper-table2-{strategy}"
        for key in ("selection", "output"):
            ablation.pop(key), paper.pop(key, None)
        assert ablation == paper, f"{path.name} differs from the paper's curation beyond its selection"
        paper = load_config(PAPER).model_dump()


@pytest.mark.parametrize("strategy", ["random", "diverse", "longest", "full"])
def test_each_table2_recipe_curates_end_to_end_given_models(strategy, tmp_path, tiny_dir):
    """The recipe runs as it is given models that run here (the demo's programmatic roles and pool, as `s1 eval`'s
    recipes get a tiny model): the ablation draws from the whole pool that passed quality, with its strategy."""
    from s1.curate import run
    from s1.curate.config import CurateConfig
    from s1.demo import task

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in task.pool(120, seed=3)), encoding="utf-8")
    (tmp_path / "domains.json").write_text(json.dumps({code: code for code in task.RULES}), encoding="utf-8")
    role = {"engine": "python", "model": "s1.demo.task:solver"}
    recipe = load_config(TABLE_2[strategy]).model_dump()
    recipe.update(
        output=str(tmp_path / "run"),
        base_dir=str(tmp_path),
        sources=[{"name": "walks", "path": "pool.jsonl", "cot_type": "math"}],
        eval_sets=[],
        domains="domains.json",
        student=str(tiny_dir),
        roles={
            "teacher": {"engine": "python", "model": "s1.demo.task:teacher"},
            "solvers": [role],
            "judge": role,
            "classifier": {"engine": "python", "model": "s1.demo.task:classifier"},
        },
    )
    recipe["selection"].update(n=10, preselect=None)
    report = run(CurateConfig.model_validate(recipe), show_progress=False, say=lambda _: None)
    exported = [json.loads(line) for line in (tmp_path / "run" / "s1k.jsonl").read_text().splitlines()]
    assert report["strategy"] == strategy
    assert len(exported) == report["selected"] == (report["pool"] - 3 if strategy == "full" else 10)  # 3 broken


@pytest.mark.parametrize(
    "text, words",
    [
        ("extends: missing.yaml\n", "which is not a file"),
        ("extends: [a, b]\n", "extends must be the path of another curation config"),
        ("extends: loop.yaml\n", "comes back to a config already read"),
    ],
)
def test_a_bad_extends_is_one_sentence(tmp_path, text, words):
    from s1.core.errors import UserError

    path = tmp_path / "loop.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_config(path)
    assert words in str(caught.value) and "\n" not in str(caught.value)
