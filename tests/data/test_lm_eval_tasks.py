"""lm-evaluation-harness task files read as they are: every field mapped, superseded (said once) or named in
one error with all the others it cannot honour."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from s1.core.errors import UserError
from s1.data.benchmarks import load_benchmark

FIXTURES = Path(__file__).parents[1] / "fixtures" / "lm_eval"


def fixture_task(tmp_path: Path, name: str) -> Path:
    """The project's lm-eval fixture task with its data path made absolute (as tests/serve/test_lm_eval.py does)."""
    path = tmp_path / name
    path.write_text((FIXTURES / name).read_text().replace("@FIXTURES@", str(FIXTURES)))
    return path


def test_the_projects_lm_eval_generation_task_loads(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="s1.data"):
        problems = load_benchmark(str(fixture_task(tmp_path, "s1_arith_gen.yaml")))
    first = Path(FIXTURES / "arith.jsonl").read_text().splitlines()[0]
    assert problems[0].question.startswith("Question: ") and problems[0].question.endswith("\nAnswer:")
    assert problems[0].answer in first and problems[0].kind == "math"
    [note] = [r.getMessage() for r in caplog.records]
    assert "generation_kwargs.max_gen_toks" in note and "filter regex" in note


def test_a_loglikelihood_task_is_refused_naming_the_output_type(tmp_path):
    with pytest.raises(UserError, match="output_type 'multiple_choice'.*doc_to_choice"):
        load_benchmark(str(fixture_task(tmp_path, "s1_arith_mc.yaml")))


def test_every_field_it_cannot_honour_is_named_in_one_message(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"q": "1+1?", "a": "2"}\n')
    (tmp_path / "t.yaml").write_text(
        "task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: d.jsonl\n  revision: x\n"
        "doc_to_text: q\ndoc_to_target: a\nprocess_docs: !function utils.process_docs\nrepeats: 4\n"
        "metric_list:\n  - metric: bleu\nfilter_list:\n  - name: f\n    filter:\n      - function: !function utils.f\n"
        "generation_kwargs:\n  max_length: 9\nfewshots: 2\n"
    )
    with pytest.raises(UserError) as caught:
        load_benchmark(str(tmp_path / "t.yaml"))
    message = str(caught.value)
    for words in (
        "dataset_kwargs.revision",
        "process_docs",
        "repeats 4 (pass --samples 4",
        "metric 'bleu'",
        "!function utils.f",
        "generation_kwargs.max_length",
        "unknown field 'fewshots'",
    ):
        assert words in message
    assert message.count("\n") == 0


def test_include_bare_field_names_fewshot_and_gold_regexes(tmp_path):
    """lm-eval's include (the base first), a bare field name for doc_to_text, few-shot examples from the
    fewshot split's local file joined with lm-eval's delimiters, and regexes_to_ignore cutting the gold."""
    (tmp_path / "test.jsonl").write_text('{"q": "1+1?", "a": "so #### 2"}\n{"q": "2+2?", "a": "so #### 4"}\n')
    (tmp_path / "train.jsonl").write_text('{"q": "3+3?", "a": "six #### 6"}\n')
    (tmp_path / "base.yaml").write_text(
        "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: test.jsonl\n    train: train.jsonl\n"
        "test_split: test\nfewshot_split: train\ndoc_to_target: a\n"
    )
    (tmp_path / "t.yaml").write_text(
        "include: base.yaml\ntask: t\ndoc_to_text: 'Q: {{q}}'\nnum_fewshot: 1\ndescription: \"Solve.\\n\"\n"
        "metric_list:\n  - metric: exact_match\n    regexes_to_ignore: ['(?s).*#### ']\n"
    )
    problems = load_benchmark(str(tmp_path / "t.yaml"))
    assert problems[0].question == "Solve.\nQ: 3+3? six #### 6\n\nQ: 1+1?"
    assert [p.answer for p in problems] == ["2", "4"]


def test_an_lm_eval_task_folder_is_an_include_path(data_dir):
    """lm-eval's gsm8k folder as --include-path: its tasks are listed by name, and one s1 cannot run is refused
    only when asked for."""
    lm_eval = pytest.importorskip("lm_eval")
    folder = Path(lm_eval.__file__).parent / "tasks" / "gsm8k"
    problems = load_benchmark("gsm8k", include_path=folder, data_dir=data_dir, limit=1)
    assert problems[0].answer == "18"
    with pytest.raises(UserError, match="s1 cannot honour"):
        load_benchmark("gsm8k_cot_self_consistency", include_path=folder, data_dir=data_dir, limit=1)


def test_an_include_cycle_is_one_sentence(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\ntask: a\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\ndoc_to_text: q\n")
    with pytest.raises(UserError, match="include: cycle"):
        load_benchmark(str(tmp_path / "a.yaml"))
