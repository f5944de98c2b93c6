"""Benchmarks as data: the shipped task files on the shared real data, a user's own task file, GPQA on a
made-up CSV in the official layout (multi-line quoted fields included)."""

from __future__ import annotations

import csv
import json
import re

import pytest
import yaml

from s1 import UserError
from s1.data.benchmarks import available_tasks, load_benchmark, read_rows

GPQA_COLUMNS = [
    "Record ID",
    "Question",
    "Correct Answer",
    "Incorrect Answer 1",
    "Incorrect Answer 2",
    "Incorrect Answer 3",
]


@pytest.fixture
def gpqa_dir(tmp_path):
    rows = [
        ["rec1", "Which particle carries\nthe electromagnetic force?", "photon", "gluon", "W boson", "graviton"],
        ["rec2", "What is the pH of pure water at 25 C?", "7", "1", "14", "0"],
        ["rec3", "Which element has atomic number 6?", "carbon", "nitrogen", "oxygen", "boron"],
    ]
    with open(tmp_path / "gpqa_diamond.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(GPQA_COLUMNS)
        writer.writerows(rows)
    return tmp_path


def test_every_shipped_benchmark_loads_from_the_shared_data(data_dir):
    expected = {
        "aime24": (30, "integer"),
        "aime25": (30, "integer"),
        "math500": (500, "math"),
        "amc23": (40, "math"),
        "gsm8k": (1319, "math"),
        "olympiadbench": (675, "math"),
        "minerva": (272, "math"),
    }
    for name, (count, kind) in expected.items():
        problems = load_benchmark(name, data_dir=data_dir)
        assert len(problems) == count and {p.kind for p in problems} == {kind}, name
        assert len({p.id for p in problems}) == count, f"{name}: ids are unique"
        assert all(p.question.strip() and p.answer.strip() for p in problems), name
    assert set(available_tasks()) >= set(expected) | {"gpqa", "gpqa_simple_evals"}


def test_golds_are_extracted_as_each_dataset_writes_them(data_dir):
    aime24 = load_benchmark("aime24", data_dir=data_dir)
    assert aime24[0].answer == "204" and aime24[0].question.startswith("Every morning Aya")  # the bare question
    assert load_benchmark("amc23", data_dir=data_dir)[0].answer == "27"  # 27.0 in the file
    assert load_benchmark("gsm8k", data_dir=data_dir)[0].answer == "18"  # after '####'
    assert load_benchmark("minerva", data_dir=data_dir)[0].answer == "1.6"  # the solution's last \boxed{}
    olympiad = load_benchmark("olympiadbench", data_dir=data_dir)
    assert olympiad[1].answer == "\\frac{1}{2 n+2}"  # $ stripped
    assert load_benchmark("math500", data_dir=data_dir)[0].id.startswith("test/")


def test_limit_and_ids(data_dir):
    assert [p.id for p in load_benchmark("aime24", data_dir=data_dir, limit=3)] == ["60", "61", "62"]
    assert [p.id for p in load_benchmark("aime24", data_dir=data_dir, ids=["71", "62"])] == ["62", "71"]
    with pytest.raises(UserError, match="No problems with ids"):
        load_benchmark("aime24", data_dir=data_dir, ids=["nope"])


def test_environment_variable_names_the_data_dir(data_dir, monkeypatch):
    monkeypatch.setenv("S1_DATA_DIR", str(data_dir))
    assert len(load_benchmark("aime25")) == 30


def test_gpqa_csv_keeps_newlines_and_shuffles_choices_by_a_fixed_seed(gpqa_dir):
    problems = load_benchmark("gpqa", data_dir=gpqa_dir)
    again = load_benchmark("gpqa", data_dir=gpqa_dir)
    assert [p.question for p in problems] == [p.question for p in again]
    assert "carries\nthe electromagnetic" in problems[0].question  # a quoted newline survives
    for p in problems:
        assert p.kind == "choice" and p.answer in "ABCD"
        lines = p.question.splitlines()[-4:]
        assert [line[:3] for line in lines] == ["A) ", "B) ", "C) ", "D) "]
        correct_text = {"rec1": "photon", "rec2": "7", "rec3": "carbon"}[p.id]
        assert lines["ABCD".index(p.answer)] == f"{p.answer}) {correct_text}"
    assert {p.answer for p in problems} != {"A"}  # the seed really shuffles


def test_gpqa_simple_evals_prompt_asks_for_an_answer_line_with_the_same_choices(gpqa_dir):
    s1_prompt = load_benchmark("gpqa", data_dir=gpqa_dir)
    openai = load_benchmark("gpqa_simple_evals", data_dir=gpqa_dir)
    for a, b in zip(s1_prompt, openai):
        assert b.question.startswith("Answer the following multiple choice question.")
        assert "'Answer: $LETTER'" in b.question and b.question.endswith(a.question)
        assert a.answer == b.answer


def test_gpqa_without_official_columns_is_a_clear_error(tmp_path):
    (tmp_path / "gpqa_diamond.csv").write_text("question,answer\nx,y\n")
    with pytest.raises(UserError, match="no id field .Record ID."):
        load_benchmark("gpqa", data_dir=tmp_path)
    (tmp_path / "gpqa_diamond.csv").write_text("Record ID,Question\nr1,x\n")
    with pytest.raises(UserError, match="doc_to_choice cannot be rendered"):
        load_benchmark("gpqa", data_dir=tmp_path)


def test_a_users_task_file_defines_a_benchmark_without_code(tmp_path, data_dir):
    task = tmp_path / "gsm8k_hard.yaml"
    task.write_text(
        "task: gsm8k_hard\n"
        f"data_file: {data_dir / 'gsm8k_test.jsonl'}\n"
        "dataset_path: openai/gsm8k\n"
        'doc_to_text: "Solve: {{ question }}"\n'
        "doc_to_target: \"{{ answer | after('####') }}\"\n"
        "answer_kind: integer\n"
    )
    problems = load_benchmark(str(task), limit=2)
    assert (
        problems[0].question.startswith("Solve: Janet") and problems[0].answer == "18" and problems[0].kind == "integer"
    )
    # the same file found by name through --include-path
    assert [p.id for p in load_benchmark("gsm8k_hard", include_path=tmp_path, limit=2)] == ["0", "1"]


@pytest.mark.parametrize(
    "body, words",
    [
        ("task: x\ndoc_to_text: '{{ q }}'\n", "needs a 'doc_to_target'"),
        (
            "task: x\ndoc_to_text: '{{ q }}'\ndoc_to_target: '{{ a }}'\nanswer_kind: essay\ndata_file: f.jsonl\n",
            "answer_kind",
        ),
        (
            "task: x\ndoc_to_text: '{{ q }}'\ndoc_to_target: '{{ a }}'\nfewshot: 3\ndata_file: f.jsonl\n",
            "unknown field 'fewshot'",
        ),
        ("task: x\ndoc_to_text: '{{ q }}'\ndoc_to_target: '{{ a }}'\n", "needs data_file"),
        ("task: [unclosed\n", "not valid YAML"),
        (
            "task: x\ndoc_to_text: '{{ nope }}'\ndoc_to_target: '{{ a }}'\ndata_file: f.jsonl\n",
            "doc_to_text cannot be rendered",
        ),
        (
            "task: x\ndoc_to_text: '{{ q.__class__ }}'\ndoc_to_target: '{{ a }}'\ndata_file: f.jsonl\n",
            "cannot be rendered",
        ),
        ("task: x\ndoc_to_text: 5\ndoc_to_target: '{{ a }}'\ndata_file: f.jsonl\n", "doc_to_text of the wrong type"),
        (
            "task: x\ndoc_to_text: '{{ q }}'\ndoc_to_target: '{{ a }}'\ndata_file: f.jsonl\nid_field: [1]\n",
            "wrong type",
        ),
        (
            "task: x\ndoc_to_text: '{{ q }}'\ndoc_to_target: '{{ a }}'\ndata_file: f.jsonl\nshuffle_choices: 'no'\n",
            "wrong type",
        ),
        (
            "task: x\ndoc_to_text: '{{ q }}'\ndoc_to_target: '{{ a }}'\ndata_file: f.jsonl\nid_field: nope\n",
            "no id field 'nope'",
        ),
        (
            "task: x\ndoc_to_text: '{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}'\n"
            "doc_to_target: '{{ a }}'\ndata_file: f.jsonl\n",
            "cannot be rendered",
        ),
    ],
)
def test_bad_task_files_are_one_clear_error(tmp_path, body, words):
    (tmp_path / "f.jsonl").write_text('{"q": "1+1?", "a": "2"}\n')
    path = tmp_path / "task.yaml"
    path.write_text(body)
    with pytest.raises(UserError, match=words):
        load_benchmark(str(path))


def test_generic_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text('{"q": "1+1?", "a": "2", "id": "x"}\n{"q": "2+2?", "a": "4", "id": "y"}\n')
    problems = load_benchmark(data=jsonl, question_field="q", answer_field="a", answer_kind="integer")
    assert [(p.id, p.answer, p.kind) for p in problems] == [("x", "2", "integer"), ("y", "4", "integer")]
    table = tmp_path / "mine.csv"
    table.write_text('question,answer\n"What is\n3*3?",9\n')
    [p] = load_benchmark(data=table)
    assert p.question == "What is\n3*3?" and p.answer == "9" and p.kind == "math"


def test_problem_content_hash_follows_prompt_gold_and_kind(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"q": "1+1?", "a": "2", "b": "3"}\n')
    base = load_benchmark(data=path, question_field="q", answer_field="a")[0].content_hash()
    assert load_benchmark(data=path, question_field="q", answer_field="a")[0].content_hash() == base
    assert load_benchmark(data=path, question_field="q", answer_field="b")[0].content_hash() != base
    assert (
        load_benchmark(data=path, question_field="q", answer_field="a", answer_kind="integer")[0].content_hash() != base
    )


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(name="nope"), "Unknown benchmark"),
        (dict(name="aime24", data_dir="/no/such/dir"), "does not exist"),
        (dict(data="/no/such/file.jsonl"), "Cannot read data file"),
        (dict(name="aime24", include_path="/no/such/dir"), "not a folder of task files"),
        (dict(name="aime24", answer_kind="essay"), "--answer-kind must be"),
    ],
)
def test_bad_benchmark_input_is_one_clear_error(kwargs, words):
    with pytest.raises(UserError, match=words):
        load_benchmark(**kwargs)


# -------------------------------------------------------------------------- no usable gold, never "None"


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"id": "p1", "q": "1+1?", "a": "2"}\n{"id": "p2", "q": "2+2?", "a": null}\n', "id 'p2'"),
        ('{"id": "p1", "q": "1+1?", "a": "2"}\n{"id": "p2", "q": null, "a": "4"}\n', "id 'p2'"),
    ],
)
def test_a_null_gold_or_question_in_a_data_file_is_refused_naming_the_record(tmp_path, text, words):
    """JSON null used to become the gold text "None", which a model answering "None" got right."""
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(UserError, match=words) as caught:
        load_benchmark(data=path, question_field="q", answer_field="a")
    assert "no value" in str(caught.value) and "None" not in str(caught.value).replace("'", "")


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"id": null, "question": "1+1?", "answer": "2"}\n', "no value in its id field 'id'"),
        ('{"id": ["a"], "question": "1+1?", "answer": "2"}\n', "a list or mapping in its id field 'id'"),
        ('{"question": "1+1?", "answer": ["2"]}\n', "a list in its 'answer' field"),
        ('{"question": "Is 2 even?", "answer": true}\n', "true/false in its 'answer' field"),
        ('{"question": {"text": "1+1?"}, "answer": "2"}\n', "a mapping in its 'question' field"),
    ],
)
def test_a_null_id_or_a_gold_that_is_not_text_is_refused(tmp_path, text, words):
    """A null id became the problem id "None"; a list or true/false gold was graded against "['2']" or "True"."""
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(words)):
        load_benchmark(data=path)


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("lone.jsonl", '{"question": "a\\ud800b", "answer": "1"}\n', "Line 1 of .* in field 'question'"),
        ("nested.jsonl", '{"q": "ok"}\n{"q": "x", "m": {"k": ["\\udc00"]}}\n', "Line 2 of .* field 'm.k\\[0\\]'"),
        ("array.json", '[{"question": "1+1?", "answer": "\\uDBFF"}]', "Record 1 of .* field 'answer'"),
    ],
)
def test_a_lone_surrogate_in_an_input_file_is_refused_naming_line_and_field(tmp_path, name, text, words):
    """JSON lets "\\ud800" stand alone; it crashed tokenizers and the curation store far from the file."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError, match=words + ".*not valid Unicode"):
        read_rows(path)


def test_bom_u2028_and_full_surrogate_pairs_are_ordinary_text(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_bytes('\ufeff{"question": "a\u2028b \\ud83d\\ude00", "answer": "1"}\n'.encode("utf-8"))
    assert read_rows(path) == [{"question": "a\u2028b \U0001f600", "answer": "1"}]


def test_a_short_csv_row_or_an_open_quote_is_refused(tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("id,question,answer\na,What is 1+1?,2\nb,What is 2+2?\n")
    with pytest.raises(UserError, match="id 'b'.*no value for doc_to_target"):
        load_benchmark(data=short)
    quote = tmp_path / "quote.csv"
    quote.write_text('id,question,answer\na,"What is 1+1?,2\nb,What is 2+2?,4\n')
    with pytest.raises(UserError, match="not valid CSV.*quote"):
        load_benchmark(data=quote)


def test_a_null_gold_in_a_benchmark_file_under_the_data_dir_is_refused(tmp_path, data_dir):
    """The shipped math500 task over a copy of its file with one answer nulled, and gpqa with a short row."""
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines()[:3]]
    rows[1]["answer"] = None
    (tmp_path / "math500.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match=f"id {rows[1]['unique_id']!r}.*no usable gold answer"):
        load_benchmark("math500", data_dir=tmp_path)
    with open(tmp_path / "gpqa_diamond.csv", "w", newline="") as f:
        csv.writer(f).writerows([GPQA_COLUMNS, ["rec1", "Which?", "photon", "gluon", "W boson"]])
    with pytest.raises(UserError, match="id 'rec1'.*doc_to_choice"):
        load_benchmark("gpqa", data_dir=tmp_path)


def test_filters_pass_a_missing_value_on_instead_of_writing_none(tmp_path):
    """`trim`, `after`, `join` of a null are refused too; `default(..., true)` may replace it on purpose."""
    (tmp_path / "f.jsonl").write_text('{"q": "1+1?", "a": null, "l": ["2", null], "n": [null]}\n')
    for target, refused in [
        ("{{ a | trim }}", True),
        ("{{ a | after('####') }}", True),
        ("{{ l | join(', ') }}", True),
        ("{{ l }}", True),  # a gold list holding null, printed whole, was the text "['2', None]"
        ("{{ n }}", True),  # and [null] was "[None]"
        ("{{ {'a': a} }}", True),
        ("{{ a | default('2', true) }}", False),
    ]:
        path = tmp_path / "task.yaml"
        path.write_text(
            yaml.safe_dump({"task": "t", "doc_to_text": "{{ q }}", "doc_to_target": target, "data_file": "f.jsonl"})
        )
        if refused:
            with pytest.raises(UserError, match="no usable gold answer"):
                load_benchmark(str(path))
        else:
            assert load_benchmark(str(path))[0].answer == "2"


def test_the_grader_refuses_to_grade_without_a_gold_answer():
    from s1.data.grading import Grader

    with Grader() as grader, pytest.raises(ValueError, match="without a gold answer"):
        grader.grade("math", None, "\\boxed{None}")


# -------------------------------------------------------------------------- the template sandbox's bounds


@pytest.mark.parametrize(
    "template",
    [
        "{{ range(10**9) }}",
        "{{ 'a' * 10**13 }}",
        "{{ 7 ** 99999999 }}",
        "{{ 'x' | center(10**10) }}",
        "{{ q.ljust(10**8) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:>{}}'.format(1, '999999999') }}",
        "{{ ('a\n' * 400000) | indent(1000000) }}",
        "{{ ('a' * 100000) | replace('', 'b' * 100000) }}",
        "{{ ['a' * 100000] * 100 }}",
        "{% set ns = namespace(x='a') %}{% for i in range(100) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{{ 'x' * 900 }}{% endfor %}",
        "{{ '%*d' % (999999999, 1) }}",  # a width taken from the values: 1 GB built before the size check
        "{{ '%.*f' % (999999999, 1.0) }}",  # 12 s in C, where no deadline can stop it
        "{{ ('\t' * 1000).expandtabs(999999) }}",
        "{{ '%*d' | format(999999999, 1) }}",
        "{{ ('a' * 1000).replace('a', 'b' * 999999) }}",  # a gigabyte built before the size check
        "{{ ('a' * 999999).join(['x'] * 1000) }}",
    ],
)
def test_a_template_asking_for_too_much_is_one_sentence_naming_file_and_field(tmp_path, template):
    """OverflowError / MemoryError tracebacks (or a machine out of memory, or a run that never ends) before."""
    (tmp_path / "f.jsonl").write_text('{"q": "1+1?", "a": "2"}\n')
    path = tmp_path / "greedy.yaml"
    path.write_text(
        yaml.safe_dump({"task": "t", "doc_to_text": template, "doc_to_target": "{{ a }}", "data_file": "f.jsonl"})
    )
    with pytest.raises(UserError) as caught:
        load_benchmark(str(path))
    message = str(caught.value)
    assert str(path.resolve()) in message and "doc_to_text" in message and "sandbox" in message, message


@pytest.mark.parametrize(
    "template, words",
    [
        ("{{ ('a' * 1000).replace('a', 'b' * 999999) }}", "replace would make over"),
        ("{{ ('a' * 999999).join(['x'] * 1000) }}", "join would make over"),
        ("{{ ('\t' * 1000).expandtabs(999999) }}", "expandtabs would make over"),
        ("{{ '%*d' % (999999999, 1) }}", "the number 999999999 is above"),
    ],
)
def test_growth_is_refused_before_it_is_built(template, words):
    """Each of these used to build its gigabyte (or fail allocating it) before the size check saw the result."""
    from s1.data.benchmarks import _environment
    from s1.data.templates import TemplateLimit

    env = _environment()
    with pytest.raises(TemplateLimit, match=words):
        env.render(env.from_string(template), {})


def test_a_large_number_in_the_data_is_an_answer_not_a_size(tmp_path):
    """The sandbox refused any number above 1,000,000 given to a filter or call, so a gold answer of 2500000
    (`| number`, `'{}'.format(a)`, `'%s' | format(a)`) made its whole benchmark unloadable."""
    (tmp_path / "big.jsonl").write_text('{"question": "How many?", "answer": 2500000}\n')
    assert [p.answer for p in load_benchmark(data=tmp_path / "big.jsonl")] == ["2500000"]
    (tmp_path / "f.jsonl").write_text('{"q": "How many?", "a": 2500000}\n')
    path = tmp_path / "t.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "task": "t",
                "doc_to_text": "{{ 'Q: {}'.format(q) }} {{ '%s' | format(a) }} {{ '%d' % a }}",
                "doc_to_target": "{{ 'A{}'.format(a) }}",
                "data_file": "f.jsonl",
            }
        )
    )
    [problem] = load_benchmark(str(path))
    assert (problem.question, problem.answer) == ("Q: How many? 2500000 2500000", "A2500000")


def test_the_deadline_stops_a_filter_that_runs_in_python_too(tmp_path):
    """wordwrap(1) of a million characters ran 75 s inside textwrap, where the deadline (which followed only the
    template's own lines) never looked; its output bound fired only at the end."""
    (tmp_path / "f.jsonl").write_text('{"q": "1+1?", "a": "2"}\n')
    path = tmp_path / "slow.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "task": "t",
                "doc_to_text": "{{ ('a' * 999999) | wordwrap(1) }}",
                "doc_to_target": "{{ a }}",
                "data_file": "f.jsonl",
            }
        )
    )
    with pytest.raises(UserError, match="doc_to_text asks for more than the template sandbox allows") as caught:
        load_benchmark(str(path))
    assert "rendering took over" in str(caught.value), str(caught.value)


def test_ordinary_templates_still_render_under_the_bounds(tmp_path):
    (tmp_path / "f.jsonl").write_text('{"q": "1+1?", "a": 2.0, "l": ["x", "y"]}\n')
    path = tmp_path / "fine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "task": "t",
                "doc_to_text": "{{ '%-6s|' % q }}{{ '{:>4}'.format(l | join('')) }} {{ 2 ** 10 }} "
                "{{ '-' * 3 }}{{ q ~ '!' }}",
                "doc_to_target": "{{ a | number }}",
                "data_file": "f.jsonl",
            }
        )
    )
    [p] = load_benchmark(str(path))
    assert p.question == "1+1?  |  xy 1024 ---1+1?!" and p.answer == "2"
