"""Benchmarks as data: each is a small YAML task file, read the way lm-evaluation-harness reads tasks.

A task names where its records come from (`data_file` in the data directory, else the hub's
`dataset_path` / `dataset_name` / `test_split`), how a record becomes a prompt (`doc_to_text`, a Jinja
template), its gold answer (`doc_to_target`) and how answers are graded (`answer_kind`: math, integer or
choice). Multiple choice tasks list their options (`doc_to_choice`, with `doc_to_target` the index of the
correct one) and may shuffle them with a fixed seed per record. The shipped tasks live in `s1/tasks/`; a
user adds one by writing such a file and passing its path to `--benchmark`, or a folder of them to
`--include-path`. Templates run in Jinja's sandbox, so a task file cannot run code.

One concern, so one module past 400 lines: benchmark task files and data files into problems.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from s1.core.errors import UserError, first_line, named
from s1.core.unicode import ESCAPED_SURROGATE, refuse_lone_surrogates
from s1.data import lm_eval_tasks

TASKS_DIR = Path(__file__).parent / "tasks"
DATA_DIR_ENV = "S1_DATA_DIR"
KINDS = ("math", "integer", "choice")
LETTERS = "ABCDEFGHIJ"
_ID_FIELDS = ("id", "unique_id", "idx", "Record ID")


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    """The prompt text given to the model."""
    answer: str
    """Gold answer; for multiple choice, the letter of the correct choice as presented."""
    kind: str
    """How to grade: math (math-verify), integer (AIME) or choice (letter)."""
    choices: tuple[str, ...] = field(default=())

    def content_hash(self) -> str:
        """Changes whenever the prompt, the gold answer or the grading kind changes."""
        text = json.dumps([self.question, self.answer, self.kind, list(self.choices)], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Task:
    """One benchmark, as declared in a task file (the field names are lm-evaluation-harness's)."""

    task: str
    doc_to_text: str
    doc_to_target: str | int
    answer_kind: str = "math"
    data_file: str | None = None
    dataset_path: str | None = None
    dataset_name: str | None = None
    test_split: str = "test"
    id_field: str | None = None
    doc_to_choice: tuple[str, ...] = ()
    shuffle_choices: bool = False
    choice_seed: int = 0
    num_fewshot: int = 0
    description: str = ""
    fewshot_split: str | None = None
    """Where few-shot examples come from (lm-eval's field); its local file is `fewshot_data_file`."""
    fewshot_data_file: str | None = None
    target_delimiter: str = " "
    """Between an example's text and its target (lm-eval's default)."""
    fewshot_delimiter: str = "\n\n"
    """Between examples, and before the question (lm-eval's default)."""
    preamble: str = ""
    """Text before the examples and the question (lm-eval's `description`; s1's own `description` only says what
    the benchmark is)."""
    target_ignore: tuple[str, ...] = ()
    """Regular expressions removed from the gold answer (lm-eval exact_match's regexes_to_ignore)."""
    source: Path | None = None
    """The task file, so a relative data_file is found beside it."""

    @classmethod
    def from_dict(cls, raw: dict, source: Path | None = None) -> Task:
        where = f"task file {source}" if source else "task"
        if not isinstance(raw, dict):
            raise UserError(f"The {where} must be a YAML mapping of fields (task, doc_to_text, doc_to_target, ...).")
        known = set(cls.__dataclass_fields__) - {"source"}
        if lm_eval_tasks.is_lm_eval(raw, known):  # a file written for lm-evaluation-harness, read as it is
            raw = lm_eval_tasks.translate(raw, known, where, _shipped_fields())
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UserError(f"The {where} has unknown field {unknown[0]!r}; the fields are {', '.join(sorted(known))}.")
        for name in ("task", "doc_to_text", "doc_to_target"):
            if raw.get(name) in (None, ""):
                raise UserError(f"The {where} needs a {name!r} field.")
        if raw.get("answer_kind", "math") not in KINDS:
            raise UserError(f"The {where} has answer_kind {raw['answer_kind']!r}; use math, integer or choice.")
        if isinstance(raw.get("num_fewshot"), int) and raw["num_fewshot"] < 0:
            raise UserError(f"The {where} has num_fewshot {raw['num_fewshot']}; use 0 or more examples.")
        if not raw.get("data_file") and not raw.get("dataset_path"):
            raise UserError(f"The {where} needs data_file (a local file) or dataset_path (a hub id).")
        types = {
            "task": str,
            "doc_to_text": str,
            "doc_to_target": (str, int),
            "answer_kind": str,
            "data_file": str,
            "dataset_path": str,
            "dataset_name": str,
            "test_split": str,
            "id_field": str,
            "doc_to_choice": list,
            "shuffle_choices": bool,
            "choice_seed": int,
            "num_fewshot": int,
            "description": str,
            "fewshot_split": str,
            "fewshot_data_file": str,
            "target_delimiter": str,
            "fewshot_delimiter": str,
            "preamble": str,
            "target_ignore": list,
        }
        for name, value in raw.items():
            if value is not None and (
                not isinstance(value, types[name]) or (isinstance(value, bool) and types[name] is int)
            ):
                raise UserError(
                    f"The {where} has a {name} of the wrong type ({type(value).__name__}); see the shipped "
                    "tasks in s1/tasks/ for the form of each field."
                )
        choices = raw.get("doc_to_choice") or ()
        if not all(isinstance(c, str) for c in choices):
            raise UserError(f"The {where} lists doc_to_choice entries that are not text templates.")
        if raw.get("answer_kind") == "choice" and not (isinstance(choices, list) and 2 <= len(choices) <= len(LETTERS)):
            raise UserError(f"The {where} is multiple choice: list 2 to {len(LETTERS)} doc_to_choice templates.")
        if raw.get("num_fewshot") and raw.get("answer_kind") == "choice":
            raise UserError(
                f"The {where} is multiple choice with num_fewshot; s1 gives few-shot examples to generation tasks only."
            )
        ignore = tuple(str(p) for p in raw.get("target_ignore") or ())
        return cls(**{**raw, "doc_to_choice": tuple(choices), "target_ignore": ignore, "source": source})


# ------------------------------------------------------------------------------------------ templates


class MissingValue(Exception):
    """A template printed a missing value (JSON null, an empty CSV cell, NaN): never the text "None"."""


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _holds_missing(value) -> bool:
    """A missing value, or a list or mapping printed whole that holds one (JSON `[null]` would print "[None]")."""
    if _missing(value):
        return True
    if isinstance(value, dict):
        return any(_holds_missing(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_missing(v) for v in value)
    return False


def _finalize(value):
    if _holds_missing(value):
        raise MissingValue()
    return value


def _environment():
    from jinja2 import StrictUndefined

    from s1.data.templates import BoundedSandbox

    env = BoundedSandbox(undefined=StrictUndefined, keep_trailing_newline=False, finalize=_finalize)
    env.filters.update(last_boxed=_last_boxed, strip_math=_strip_math, number=_number, after=_after)
    env.wrap_filters(missing=_missing)
    return env


def _last_boxed(text) -> str:
    from s1.data.grading import last_boxed

    return last_boxed(str(text)) or ""


def _strip_math(text) -> str:
    return str(text).strip().strip("$").strip()


def _number(value) -> str:
    """27.0 -> '27', 2.5 -> '2.5', '025' -> '025' (strings are kept as written)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _after(text, marker: str) -> str:
    return str(text).split(marker)[-1].strip()


def _render(env, template: str, row: dict, extra: dict, what: str, task: Task, number: int, pid: str | None = None):
    from jinja2 import TemplateError

    from s1.data.templates import TemplateLimit

    names = {k: v for k, v in row.items() if isinstance(k, str) and k.isidentifier()}
    record = f"Record {number}" + (f" (id {pid!r})" if pid is not None else "") + f" of {task.task}"
    where = f" (task file {task.source})" if task.source else ""
    try:
        return env.render(_compiled(env, template), {**names, "doc": row, **extra})
    except MissingValue:
        raise UserError(
            f"{record}{where} has no value for {what} (a null, empty or missing field), so it has no usable "
            f"{'gold answer' if what == 'doc_to_target' else 'text'}; fix or remove the record."
        ) from None
    except (TemplateLimit, MemoryError, OverflowError, ArithmeticError) as exc:
        raise UserError(
            f"{record}{where}: {what} asks for more than the template sandbox allows ({first_line(exc, 200)}); "
            "simplify the template."
        ) from None
    except (TemplateError, RecursionError, TypeError, ValueError, LookupError, AttributeError) as exc:
        raise UserError(
            f"{record}{where}: {what} cannot be rendered ({exc.__class__.__name__}: "
            f"{first_line(exc, 200)}); check the task's fields."
        ) from None


def _compiled(env, template: str):
    """Each template text compiled once per environment (a benchmark renders it for every record)."""
    cache = env.__dict__.setdefault("_s1_compiled", {})
    if template not in cache:
        cache[template] = env.from_string(template)
    return cache[template]


# ------------------------------------------------------------------------------------------ loading


def read_rows(path: Path, what: str = "data", strings_as: str | None = None) -> list[dict]:
    """Rows of a JSONL, JSON-array, CSV or Parquet file, with a clear error for anything unreadable: the one reader
    of such files (`s1 eval --data`, `s1 generate --input`, curation's sources). `what` names the file in errors;
    with `strings_as`, a JSONL line holding a bare JSON string is the row {strings_as: that string}."""
    if path.suffix.lower() == ".parquet":
        try:
            import datasets

            return [dict(r) for r in datasets.Dataset.from_parquet(str(path))]
        except Exception as exc:
            raise UserError(f"Cannot read Parquet file {path} ({exc.__class__.__name__}); check the path.") from None
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark some editors write is not part of the data
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"Cannot read {what} file {path} ({exc.__class__.__name__}); check the path and that it is UTF-8."
        ) from None
    if path.suffix.lower() == ".csv":
        # the whole text through the CSV parser: quoted fields keep their newlines; strict, so a quote left
        # open is an error rather than the rest of the file read into one field
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        try:
            return list(reader)
        except csv.Error as exc:
            raise UserError(
                f"{path} is not valid CSV near line {reader.line_num} ({exc}; a quote left open?); fix the file."
            ) from None
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":  # more than one value: JSON lines in a .json file, read as such below
                raise UserError(f"{path} is not valid JSON.") from None
        else:
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise UserError(f"{path} must hold a JSON list of records (or one JSON object per line).")
            if ESCAPED_SURROGATE.search(text):
                for number, row in enumerate(rows, 1):
                    refuse_lone_surrogates(row, f"Record {number} of {path}")
            return rows
    rows = []
    # not splitlines: U+2028 and U+0085 may sit inside a JSON string
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"Line {number} of {path} is not valid JSON; write one JSON object per line.") from None
            if strings_as is not None and isinstance(row, str):
                row = {strings_as: row}
            if not isinstance(row, dict):
                raise UserError(f"Line {number} of {path} is not a JSON object; write one record per line.")
            if ESCAPED_SURROGATE.search(line):
                refuse_lone_surrogates(row, f"Line {number} of {path}")
            rows.append(row)
    return rows


def task_rows(task: Task, data_dir: str | Path | None) -> list[dict]:
    """A task's raw records: its data file from `data_dir` (or $S1_DATA_DIR, or beside the task file), else
    its hub dataset; evaluation turns them into problems, curation checks pool questions against them."""
    folder = data_dir or os.environ.get(DATA_DIR_ENV)
    if task.data_file:
        candidates = [Path(task.data_file).expanduser()]
        if folder:
            candidates.insert(0, Path(folder) / task.data_file)
        if task.source is not None:
            candidates.append(task.source.parent / task.data_file)
        for path in candidates:
            if path.is_file():
                return read_rows(path)
        if folder and not Path(folder).is_dir():
            raise UserError(f"Data directory {folder} does not exist; pass the folder that holds {task.data_file}.")
        if folder or not task.dataset_path:
            raise UserError(
                f"{task.data_file} was not found in {folder or 'the task file folder'}; put it there, "
                f"or set {named('data_dir')} to the folder that holds it."
            )
    try:
        import datasets

        return [dict(r) for r in datasets.load_dataset(task.dataset_path, task.dataset_name, split=task.test_split)]
    except Exception as exc:  # offline, gated or missing: all mean "give me a local file"
        hint = (
            f"pass --data-dir with {task.data_file} or set ${DATA_DIR_ENV}" if task.data_file else "check dataset_path"
        )
        raise UserError(f"Could not load {task.task} from the hub ({exc.__class__.__name__}); {hint}.") from None


def fewshot_rows(task: Task, data_dir: str | Path | None, rows: list[dict]) -> list[dict] | None:
    """The records few-shot examples are drawn from: the fewshot split's local file when there is one, else (as
    lm-eval does when a task has no separate split) the evaluated records themselves, never a record's own."""
    if not task.num_fewshot:
        return None
    if task.fewshot_data_file:
        folder = data_dir or os.environ.get(DATA_DIR_ENV)
        candidates = ([Path(folder) / task.fewshot_data_file] if folder else []) + [Path(task.fewshot_data_file)]
        if task.source is not None:
            candidates.append(task.source.parent / task.fewshot_data_file)
        for path in candidates:
            if path.is_file():
                return read_rows(path)
    if task.fewshot_split:
        lm_eval_tasks.log.warning(
            "Note: no local file for %s's fewshot_split %r, so its %d examples come from the evaluated records "
            "(never a problem's own).",
            task.task,
            task.fewshot_split,
            task.num_fewshot,
        )
    return rows


def _fewshot_context(env, task: Task, shots: list[dict], row: dict, pid: str) -> str:
    """lm-eval's context: the preamble, then num_fewshot examples (text, target_delimiter, target) joined by
    fewshot_delimiter, then the fewshot_delimiter before the question; drawn by a seed per problem."""
    draw = random.Random(f"fewshot:{pid}").sample(range(len(shots)), min(len(shots), task.num_fewshot + 1))
    chosen = [i for i in draw if shots[i] is not row and shots[i] != row][: task.num_fewshot]
    if len(chosen) < task.num_fewshot:
        raise UserError(
            f"{task.task} asks for {task.num_fewshot} few-shot examples but fewer records are there to draw them "
            "from; lower num_fewshot."
        )
    parts = []
    for i in chosen:
        shot = shots[i]
        text = _render(env, task.doc_to_text, shot, {}, "doc_to_text", task, i + 1)
        target = _render(env, str(task.doc_to_target), shot, {}, "doc_to_target", task, i + 1)
        parts.append(text + task.target_delimiter + target)
    return task.fewshot_delimiter.join(parts) + task.fewshot_delimiter


def problems_of(task: Task, rows: list[dict], shots: list[dict] | None = None) -> list[Problem]:
    """Render each record into a Problem: prompt, gold answer, choices shuffled by a per-record seed; with
    `shots`, the task's few-shot examples before each question."""
    env = _environment()
    id_field = task.id_field or next((f for f in _ID_FIELDS if rows and f in rows[0]), None)
    problems, seen = [], set()
    for number, row in enumerate(rows, 1):
        if task.id_field and task.id_field not in row:
            raise UserError(
                f"Record {number} of {task.task} has no id field {task.id_field!r}; name an existing field."
            )
        if id_field and id_field in row and (_missing(row[id_field]) or isinstance(row[id_field], (dict, list))):
            raise UserError(
                f"Record {number} of {task.task} has {'no value' if _missing(row[id_field]) else 'a list or mapping'} "
                f"in its id field {id_field!r} (its id would be the text {str(row[id_field])[:20]!r}); give every "
                "record an id that is text or a number, or name another field as the id."
            )
        pid = str(row.get(id_field, number - 1)) if id_field else str(number - 1)
        if pid in seen:
            raise UserError(f"Record {number} of {task.task} repeats id {pid!r}; ids must be unique (set id_field).")
        seen.add(pid)
        extra: dict = {}
        if task.answer_kind == "choice":
            options = [_render(env, t, row, {}, "doc_to_choice", task, number, pid).strip() for t in task.doc_to_choice]
            target = _render(env, str(task.doc_to_target), row, {}, "doc_to_target", task, number, pid).strip()
            correct = _correct_index(target, options, task.task, number)
            order = list(range(len(options)))
            if task.shuffle_choices:
                random.Random(f"{task.choice_seed}:{pid}").shuffle(order)
            shown = [options[i] for i in order]
            answer = LETTERS[order.index(correct)]
            extra = {
                "choices": shown,
                "letters": LETTERS[: len(shown)],
                "choice_lines": "\n".join(f"{letter}) {o}" for letter, o in zip(LETTERS, shown)),
            }
            question = _render(env, task.doc_to_text, row, extra, "doc_to_text", task, number, pid)
            problems.append(Problem(pid, question, answer, "choice", tuple(shown)))
            continue
        question = _render(env, task.doc_to_text, row, extra, "doc_to_text", task, number, pid)
        answer = _render(env, str(task.doc_to_target), row, extra, "doc_to_target", task, number, pid).strip()
        for pattern in task.target_ignore:
            answer = re.sub(pattern, "", answer).strip()
        if question.strip() and shots is not None and task.num_fewshot:
            question = _fewshot_context(env, task, shots, row, pid) + question
        if question.strip() and task.preamble:
            question = task.preamble + question
        if not question.strip():
            raise UserError(f"Record {number} (id {pid!r}) of {task.task} has an empty question.")
        if not answer:
            raise UserError(f"Record {number} (id {pid!r}) of {task.task} has an empty answer; check doc_to_target.")
        if task.answer_kind == "integer":
            plain = answer.replace(",", "") if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", answer) else answer
            try:
                answer = str(int(float(plain))) if re.fullmatch(r"[+-]?\d+(\.0+)?", plain) else str(int(plain))
            except ValueError:
                raise UserError(
                    f"Record {pid} of {task.task} has a non-integer answer {answer!r}; use answer_kind: math."
                ) from None
        problems.append(Problem(pid, question, answer, task.answer_kind))
    return problems


def _correct_index(target: str, options: list[str], task: str, number: int) -> int:
    if re.fullmatch(r"\d+", target) and int(target) < len(options):
        return int(target)
    if len(target) == 1 and target.upper() in LETTERS[: len(options)]:
        return LETTERS.index(target.upper())
    if target in options:
        return options.index(target)
    raise UserError(
        f"Record {number} of {task}: doc_to_target {target!r} is neither a choice index, a letter nor a choice."
    )


# ------------------------------------------------------------------------------------------ registry


def _read_task_file(path: Path) -> Task:
    raw = refuse_lone_surrogates(lm_eval_tasks.load_yaml(path), f"Task file {path}")
    return Task.from_dict(raw, source=path.resolve())


def task_fields(name: str, include_path: str | Path | None = None) -> dict:
    """A benchmark's task file as written (lm-eval's results file records it under `configs`)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else available_tasks(include_path).get(name)
    raw = lm_eval_tasks.load_yaml(path) if path is not None else None
    return raw if isinstance(raw, dict) else {"task": name}


def _shipped_fields() -> dict[str, dict]:
    """Each shipped task's raw fields: how an lm-eval task's hub dataset finds its local data file."""
    import yaml

    return {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(TASKS_DIR.glob("*.yaml"))}


def available_tasks(include_path: str | Path | None = None) -> dict[str, Path]:
    """Task name -> task file: the shipped tasks, then those in include_path (which may override them)."""
    found: dict[str, Path] = {}
    folders = [TASKS_DIR] + ([Path(include_path)] if include_path else [])
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"--include-path {folder} is not a folder of task files.")
        for path in sorted(folder.glob("*.y*ml")):
            raw = lm_eval_tasks.load_yaml(path)
            own = set(Task.__dataclass_fields__) - {"source"}
            if isinstance(raw, dict) and lm_eval_tasks.is_lm_eval(raw, own):
                # an lm-eval folder also holds group files and tasks s1 cannot run: each is read when asked for
                if isinstance(raw.get("task"), str):
                    found[raw["task"]] = path
                continue
            found[_read_task_file(path).task] = path
    return found


def get_task(name: str, include_path: str | Path | None = None) -> Task:
    """A task by name, or from a path to a task file."""
    if name.endswith((".yaml", ".yml")):
        return _read_task_file(Path(name))
    tasks = available_tasks(include_path)
    if name not in tasks:
        raise UserError(
            f"Unknown benchmark {name!r}; choose one of {', '.join(tasks)}, pass a task file "
            "(my_task.yaml), or --data FILE."
        )
    return _read_task_file(tasks[name])


def file_task(
    data: str | Path,
    question_field: str | None,
    answer_field: str | None,
    id_field: str | None,
    answer_kind: str | None,
) -> tuple[Task, list[dict]]:
    """A task made on the fly for `--data FILE`: the named (or guessed) question and answer fields.

    The fields are copied under fixed names, so any field name (spaces included) works in the template."""
    rows = read_rows(Path(data))
    if not rows:
        raise UserError(f"{data} holds no records.")
    first = rows[0]
    q = question_field or next((n for n in ("question", "problem", "prompt", "Question") if n in first), None)
    a = answer_field or next((n for n in ("answer", "final_answer", "gt", "Correct Answer") if n in first), None)
    if not q or not a:
        raise UserError(
            f"Cannot tell which fields of {data} hold the question and answer; "
            "pass --question-field and --answer-field."
        )
    for number, row in enumerate(rows, 1):
        missing = [f for f in (q, a) if f not in row]
        if missing:
            raise UserError(
                f"Record {number} of {data} has no {missing[0]!r} field; "
                "name the fields with --question-field/--answer-field."
            )
        for name in (q, a):  # a list, mapping or true/false would be graded against its Python spelling
            if isinstance(row[name], (bool, dict, list)):
                raise UserError(
                    f"Record {number} of {data} has {_KIND_OF[type(row[name])]} in its {name!r} field, not text or a "
                    "number; write the question and the gold answer as text."
                )
    kind = answer_kind or "math"
    if kind == "choice":
        raise UserError(
            "A multiple-choice --data file needs its choices declared: write a task file with doc_to_choice."
        )
    task = Task(
        task=Path(data).stem,
        doc_to_text="{{ doc['__question'] }}",
        doc_to_target="{{ doc['__answer'] | number }}",
        answer_kind=kind,
        data_file=str(data),
        id_field=id_field,
    )
    return task, [{**r, "__question": r[q], "__answer": r[a]} for r in rows]


_KIND_OF = {bool: "true/false", dict: "a mapping", list: "a list"}


def load_benchmark(*args, **kwargs) -> list[Problem]:
    """Problems of a named benchmark (or task file), or of `data` (any JSONL/CSV/JSON/Parquet) when given."""
    return benchmark_problems(*args, **kwargs)[1]


def benchmark_problems(
    name: str | None = None,
    data_dir: str | Path | None = None,
    data: str | Path | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    answer_kind: str | None = None,
    limit: int | None = None,
    ids: list[str] | None = None,
    include_path: str | Path | None = None,
) -> tuple[str, list[Problem]]:
    """(task name, problems), each task file and data file read once; see `load_benchmark`."""
    if answer_kind is not None and answer_kind not in KINDS:
        raise UserError(f"--answer-kind must be math, integer or choice, got {answer_kind!r}.")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}.")
    if data is not None:
        task, rows = file_task(data, question_field, answer_field, id_field, answer_kind)
        problems = problems_of(task, rows)
    else:
        task = get_task(name or "", include_path)
        if answer_kind is not None and answer_kind != task.answer_kind:
            if "choice" in (answer_kind, task.answer_kind):
                raise UserError(
                    f"{task.task} is graded as {task.answer_kind}; --answer-kind {answer_kind} cannot change that."
                )
            task = replace(task, answer_kind=answer_kind)
        rows = task_rows(task, data_dir)
        problems = problems_of(task, rows, fewshot_rows(task, data_dir, rows))
    if ids:
        wanted = set(ids)
        problems = [p for p in problems if p.id in wanted]
        missing = wanted - {p.id for p in problems}
        if missing:
            raise UserError(f"No problems with ids {', '.join(sorted(missing))}; check --ids against the data.")
    if limit is not None:
        problems = problems[:limit]
    if not problems:
        raise UserError("The benchmark holds no problems.")
    return task.task, problems
