"""Benchmarks as lists of `Problem`: AIME24, AIME25, MATH500, GPQA-Diamond, or any JSONL/CSV file.

Each loads from a local file (`--data-dir` or $S1_DATA_DIR) or, when online, from the hub with
`datasets`. Prompts are the bare question for math, as s1 does; GPQA appends its four choices in an
order shuffled by a fixed seed per question, so the same question always shows the same order.
"""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    """The prompt text given to the model."""
    answer: str
    """Gold answer; for multiple choice, the letter of the correct choice as presented."""
    kind: str
    """How to grade: math (math-verify), integer (AIME) or choice (GPQA letter)."""
    choices: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Spec:
    file: str
    hub: tuple[str, str | None, str]
    """(dataset id, config, split) for `datasets.load_dataset`."""
    kind: str


SPECS = {
    "aime24": Spec("aime24_nofigures.jsonl", ("simplescaling/aime24_nofigures", None, "train"), "integer"),
    "aime25": Spec("aime25_nofigures.jsonl", ("simplescaling/aime25_nofigures", None, "train"), "integer"),
    "math500": Spec("math500.jsonl", ("HuggingFaceH4/MATH-500", None, "test"), "math"),
    "gpqa": Spec("gpqa_diamond.csv", ("Idavidrein/gpqa", "gpqa_diamond", "train"), "choice"),
}
DATA_DIR_ENV = "S1_DATA_DIR"
GPQA_CHOICE_SEED = 0


def read_rows(path: Path) -> list[dict]:
    """Rows of a JSONL, JSON-array or CSV file, with a clear error for anything unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read data file {path} ({exc.__class__.__name__}); check the path.") from None
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:
            raise UserError(f"{path} is not valid JSON.") from None
        if not isinstance(rows, list):
            raise UserError(f"{path} must hold a JSON list of records.")
        return rows
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"Line {number} of {path} is not valid JSON; write one JSON object per line.") from None
    return rows


def _hub_rows(name: str, spec: Spec) -> list[dict]:
    try:
        import datasets

        repo, config, split = spec.hub
        return [dict(r) for r in datasets.load_dataset(repo, config, split=split)]
    except Exception as exc:  # offline, gated or missing: all mean "give me a local file"
        raise UserError(
            f"Could not load {name} from the hub ({exc.__class__.__name__}); pass --data-dir with {spec.file} "
            f"or set ${DATA_DIR_ENV}."
        ) from None


def gpqa_problem(row: dict, index: int, seed: int = GPQA_CHOICE_SEED) -> Problem:
    """Question plus `A) …` lines; the choice order comes from a seed and the question's id."""
    try:
        correct = row["Correct Answer"].strip()
        options = [correct] + [row[f"Incorrect Answer {i}"].strip() for i in (1, 2, 3)]
        question = row["Question"].strip()
    except (KeyError, AttributeError):
        raise UserError(
            "A GPQA row lacks the official columns (Question, Correct Answer, Incorrect Answer 1..3); "
            "use the official CSV layout."
        ) from None
    pid = str(row.get("Record ID") or index)
    random.Random(f"{seed}:{pid}").shuffle(options)
    letter = "ABCD"[options.index(correct)]
    lines = "\n".join(f"{l}) {o}" for l, o in zip("ABCD", options))
    return Problem(pid, f"{question}\n\n{lines}", letter, "choice", tuple(options))


def _math_problems(rows: list[dict], kind: str, q_field: str, a_field: str, id_field: str | None) -> list[Problem]:
    problems = []
    for i, row in enumerate(rows):
        if q_field not in row or a_field not in row:
            raise UserError(f"Record {i + 1} has no {q_field!r} or {a_field!r} field; name them with --question-field/--answer-field.")
        pid = str(row.get(id_field, i) if id_field else row.get("id", row.get("unique_id", i)))
        answer = str(row[a_field]).strip()
        if kind == "integer":
            try:
                answer = str(int(answer))
            except ValueError:
                raise UserError(f"Record {pid} has a non-integer answer {answer!r}; use --answer-kind math.") from None
        problems.append(Problem(pid, str(row[q_field]), answer, kind))
    return problems


def _first_field(rows: list[dict], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if rows and n in rows[0]), None)


def load_benchmark(
    name: str | None = None,
    data_dir: str | Path | None = None,
    data: str | Path | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    answer_kind: str | None = None,
    limit: int | None = None,
    ids: list[str] | None = None,
) -> list[Problem]:
    """Problems of a named benchmark, or of `data` (any JSONL/CSV) when given."""
    if data is not None:
        rows = read_rows(Path(data))
        q = question_field or _first_field(rows, ("question", "problem", "prompt", "Question"))
        a = answer_field or _first_field(rows, ("answer", "final_answer", "gt", "Correct Answer"))
        if not q or not a:
            raise UserError(f"Cannot tell which fields of {data} hold the question and answer; pass --question-field and --answer-field.")
        kind = answer_kind or "math"
        problems = (
            [gpqa_problem(r, i) for i, r in enumerate(rows)] if kind == "choice" else _math_problems(rows, kind, q, a, id_field)
        )
    else:
        if name not in SPECS:
            raise UserError(f"Unknown benchmark {name!r}; choose one of {', '.join(SPECS)}, or pass --data FILE.")
        spec = SPECS[name]
        folder = data_dir or os.environ.get(DATA_DIR_ENV)
        if folder:
            path = Path(folder) / spec.file
            if not path.exists():
                raise UserError(f"{path} does not exist; put {spec.file} in the data directory or drop --data-dir to use the hub.")
            rows = read_rows(path)
        else:
            rows = _hub_rows(name, spec)
        if name == "gpqa":
            problems = [gpqa_problem(r, i) for i, r in enumerate(rows)]
        else:
            problems = _math_problems(rows, answer_kind or spec.kind, "problem", "answer", None)
    if ids:
        wanted = set(ids)
        problems = [p for p in problems if p.id in wanted]
        missing = wanted - {p.id for p in problems}
        if missing:
            raise UserError(f"No problems with ids {', '.join(sorted(missing))}; check --ids against the data.")
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be at least 1, got {limit}.")
        problems = problems[:limit]
    if not problems:
        raise UserError("The benchmark holds no problems.")
    return problems
