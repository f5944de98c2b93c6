"""Answer extraction and equivalence: math by math-verify, AIME by integer, GPQA by letter.

math-verify bounds its work with signal.alarm, which only works on a process's main thread and cannot
stop a crash; so every check runs in a worker process's main thread, and a worker that hangs past a
wall-clock limit is killed and replaced. A pathological expression costs one sample a "timeout", never
the run.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
from dataclasses import asdict, dataclass

KINDS = ("math", "integer", "choice")
CHOICE_LETTERS = "ABCD"


@dataclass(frozen=True)
class Grade:
    extracted: str | None
    correct: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        # "\boxed 5" form
        m = re.match(r"\\boxed\s+([^\s$]+)", text[start:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


_ANSWER_LINE = re.compile(r"(?:final\s+answer|answer)\s*(?:is)?\s*[:：]\s*(.+)", re.IGNORECASE)


def extract(text: str) -> tuple[str | None, str]:
    """(answer, where it came from): the last \\boxed{}, else the last "Answer:"/"Final Answer:" value."""
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip(), "last \\boxed{}"
    matches = _ANSWER_LINE.findall(text)
    for value in reversed(matches):
        value = _clean(value)
        if value:
            return value, "last 'Answer:' line"
    return None, "no \\boxed{} and no 'Answer:' line"


def _clean(value: str) -> str:
    value = value.strip().strip("$").strip()
    value = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", value).strip()
    return value.rstrip(".").strip()


def normalize_answer(value: str) -> str:
    """An answer without math delimiters, \\text{} wrappers, spaces, thousands separators or degrees."""
    value = _clean(value)
    value = re.sub(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}", r"\1", value)
    value = value.replace("\\!", "").replace("{,}", "").replace(",", "").replace(" ", "")
    value = re.sub(r"\^\{?\\circ\}?|°", "", value)
    return value


def _math_equal(gold: str, answer: str) -> tuple[bool, str]:
    from math_verify import parse, verify

    gold_parsed = parse(f"\\boxed{{{gold}}}")
    answer_parsed = parse(f"\\boxed{{{answer}}}")
    if not gold_parsed or not answer_parsed:
        same = normalize_answer(gold) == normalize_answer(answer)
        return same, f"math-verify could not parse {'gold' if not gold_parsed else 'answer'}; text {'matches' if same else 'differs'}"
    if verify(gold_parsed, answer_parsed):
        return True, "math-verify: equivalent"
    if normalize_answer(gold) == normalize_answer(answer):
        return True, "text equal after removing LaTeX formatting"
    return False, "math-verify: not equivalent"


def _grade(kind: str, gold: str, text: str) -> Grade:
    answer, where = extract(text)
    if kind == "choice":
        letter = _choice_letter(answer) if answer is not None else _choice_letter_anywhere(text)
        if letter is None:
            return Grade(answer, False, f"no choice letter found ({where})")
        ok = letter == gold.strip().upper()
        return Grade(letter, ok, f"chose {letter}, correct is {gold.strip().upper()}")
    if answer is None:
        return Grade(None, False, where)
    if kind == "integer":
        value = normalize_answer(answer)
        if re.fullmatch(r"[+-]?\d+", value):
            ok = int(value) == int(gold)
            return Grade(answer, ok, f"{where}: integer {int(value)} {'=' if ok else '!='} {int(gold)}")
        ok, why = _math_equal(str(int(gold)), answer)
        return Grade(answer, ok, f"{where}: {why}")
    ok, why = _math_equal(gold, answer)
    return Grade(answer, ok, f"{where}: {why}")


def _choice_letter(answer: str) -> str | None:
    m = re.search(r"\(?\b([A-D])\b\)?", normalize_answer(answer).replace("\\text", ""))
    return m.group(1) if m else None


def _choice_letter_anywhere(text: str) -> str | None:
    found = re.findall(r"(?:answer|choice|option)\s*(?:is)?\s*[:：]?\s*\(?([A-D])\)?\b", text, re.IGNORECASE)
    return found[-1].upper() if found else None


def _grade_batch(items: list[tuple[str, str, str]]) -> list[dict]:
    out = []
    for kind, gold, text in items:
        try:
            out.append(_grade(kind, gold, text).to_dict())
        except Exception as exc:  # a grader bug or math-verify's own timeout: this sample, not the run
            out.append(Grade(None, False, f"grading failed: {exc.__class__.__name__}").to_dict())
    return out


class Grader:
    """Grades in a worker process; call `close` (or use as a context manager) when done."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self._pool: cf.ProcessPoolExecutor | None = None

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _kill(self) -> None:
        if self._pool is not None:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def grade(self, kind: str, gold: str, text: str) -> Grade:
        return self.grade_many([(kind, gold, text)])[0]

    def grade_many(self, items: list[tuple[str, str, str]]) -> list[Grade]:
        """Grade (kind, gold, text) triples; a batch that hangs is retried one item at a time."""
        if not items:
            return []
        for kind, _, _ in items:
            if kind not in KINDS:
                raise ValueError(f"unknown answer kind {kind!r}")
        try:
            return [Grade(**g) for g in self._run(items, self.timeout * len(items))]
        except (cf.TimeoutError, cf.process.BrokenProcessPool):
            self._kill()
        if len(items) == 1:
            extracted = extract(items[0][2])[0]
            return [Grade(extracted and extracted[:200], False, "grading timed out or crashed; counted wrong")]
        return [g for item in items for g in self.grade_many([item])]

    def _run(self, items, timeout: float) -> list[dict]:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(max_workers=1)
        return self._pool.submit(_grade_batch, items).result(timeout=timeout)
