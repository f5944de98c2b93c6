"""Every reader of a user's file refuses a lone UTF-16 surrogate where it reads it (core/unicode.py): JSON's
and YAML's escapes can spell one, and it used to surface later as a tokenizer's or SQLite's traceback."""

from __future__ import annotations

import pytest

from s1 import UserError


def _task_file(tmp_path):
    from s1.data.benchmarks import get_task

    (tmp_path / "t.yaml").write_text(
        'task: t\ndoc_to_text: "Q \\ud800 {{ question }}"\ndoc_to_target: "{{ answer }}"\ndata_file: d.jsonl\n'
    )
    return lambda: get_task(str(tmp_path / "t.yaml"))


def _curate_config(tmp_path):
    from s1.curate import load_config

    (tmp_path / "c.yaml").write_text(
        f'output: {tmp_path / "run"}\nsources:\n  - name: "pool\\U0000DC00"\n    path: p.jsonl\n'
    )
    return lambda: load_config(tmp_path / "c.yaml")


def _recipe(tmp_path):
    from s1.train.recipe import read_recipe

    (tmp_path / "r.yaml").write_text('learning_rate: 1.0e-5\nrun_name: "x\\udfff"\n')
    return lambda: read_recipe(str(tmp_path / "r.yaml"))


@pytest.mark.parametrize(
    "reader, words",
    [
        (_task_file, r"Task file .*t\.yaml holds a lone UTF-16 surrogate .* in field 'doc_to_text'"),
        (_curate_config, r"Config .*c\.yaml holds a lone UTF-16 surrogate .* in field 'sources\[0\]\.name'"),
        (_recipe, r"Recipe file .*r\.yaml holds a lone UTF-16 surrogate .* in field 'run_name'"),
    ],
)
def test_a_lone_surrogate_in_a_yaml_file_is_refused_naming_file_and_field(tmp_path, reader, words):
    with pytest.raises(UserError, match=words):
        reader(tmp_path)()


def test_escaped_pairs_and_plain_text_in_yaml_pass(tmp_path):
    from s1.train.recipe import read_recipe

    (tmp_path / "r.yaml").write_text('run_name: "caf\\u00e9 \\ud83d\\ude00 \\U0001F600"\n', encoding="utf-8")
    assert read_recipe(str(tmp_path / "r.yaml")) == {"run_name": "café \U0001f600 \U0001f600"}
