"""Answer extraction and equivalence: math by math-verify, AIME by integer, GPQA by letter.

Why it is built this way:
- Equivalence is math-verify's. The only text fallback compares answers with formatting removed but
  every comma kept (a thousands separator `10,000` is rewritten first; a list `1,2` never becomes `12`),
  so two different tuples, lists, intervals or numbers are never called equal.
- math-verify bounds its work with signal.alarm, which only works on a process's main thread and cannot
  stop a crash; so every check runs in a worker process's main thread, and a worker that hangs past a
  wall-clock limit is killed and replaced. A pathological expression costs one sample a "timeout",
  never the run.
- Workers are started with `spawn` (no copy of the parent's threads or model) and watch their parent:
  when it dies, even by SIGKILL, they exit within a second, so a killed run leaves nothing behind.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import re
import threading
import time
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


# ----------------------------------------------------------------------------------------- extraction

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced; `\\boxed 5` gives `5`."""
    matches = list(_BOX.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    stripped = rest.lstrip()
    if not stripped.startswith("{"):
        # "\boxed 5": the argument is the token right after the command, never a later brace group
        m = re.match(r"\s+([^\s$\\{}]+)", rest)
        return m.group(1) if m else None
    start = len(rest) - len(stripped)
    depth = 0
    for j in range(start, len(rest)):
        if rest[j] == "{":
            depth += 1
        elif rest[j] == "}":
            depth -= 1
            if depth == 0:
                return rest[start + 1 : j]
    return None


_ANSWER_LINE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is\s*)?[:：]\s*(.+)|\banswer\s+is\s+(.+)", re.IGNORECASE
)
# A bare last line is taken as the answer only when it is short (a value, not a sentence of reasoning).
_BARE_LINE_MAX = 40


def extract(text: str) -> tuple[str | None, str]:
    """(answer, where it came from): the last \\boxed{}, else the last "Answer:"/"the answer is" value,
    else a short bare last line."""
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip(), "last \\boxed{}"
    for m in reversed(list(_ANSWER_LINE.finditer(text))):
        value = _answer_value(m.group(1) or m.group(2))
        if value:
            return value, "last 'Answer:' line"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines:
        value = _answer_value(lines[-1])
        if value and len(value) <= _BARE_LINE_MAX:
            return value, "bare last line"
    return None, "no \\boxed{}, no 'Answer:' line and no short last line"


def _answer_value(value: str) -> str:
    """The value of an answer line: its first math span if it has one, else the text up to a sentence end."""
    value = value.strip()
    math = re.search(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", value)
    if math:
        return next(g for g in math.groups() if g is not None).strip()
    value = re.split(r"\.\s|\.$", value, maxsplit=1)[0]
    return _clean(value)


def _clean(value: str) -> str:
    value = value.strip().strip("*").strip().strip("$").strip()
    value = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", value).strip()
    return value.rstrip(".").strip()


# -------------------------------------------------------------------------------------- equivalence

_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def normalize_answer(value: str) -> str:
    """An answer without math delimiters, \\text{} wrappers, spacing, \\left/\\right or degree signs.

    Commas stay: only a whole number written with thousands separators (`10,000`, `10{,}000`) loses them.
    So `1,2`, `(1,2)` and `12` stay three different strings.
    """
    value = _clean(value)
    value = re.sub(r"\\(?:text|mathrm|textbf|mbox|operatorname)\{([^{}]*)\}", r"\1", value)
    value = value.replace("{,}", ",").replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    value = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", value)
    value = re.sub(r"\\[dt]frac", r"\\frac", value)
    value = re.sub(r"\^\{?\\circ\}?|°", "", value)
    value = re.sub(r"\s+", "", value)
    if _THOUSANDS.fullmatch(value):
        value = value.replace(",", "")
    return value


def _math_equal(gold: str, answer: str) -> tuple[bool, str]:
    from math_verify import parse, verify

    gold_parsed = parse(f"\\boxed{{{gold}}}")
    answer_parsed = parse(f"\\boxed{{{answer}}}")
    if gold_parsed and answer_parsed and verify(gold_parsed, answer_parsed):
        if _same_shape(gold, answer):
            return True, "math-verify: equivalent"
        return False, "math-verify: equivalent only after dropping separators; the lists differ"
    if normalize_answer(gold) == normalize_answer(answer):
        return True, "same text once LaTeX formatting is removed"
    if not gold_parsed or not answer_parsed:
        return False, f"math-verify could not parse the {'gold answer' if not gold_parsed else 'answer'}; texts differ"
    return False, "math-verify: not equivalent"


def _same_shape(gold: str, answer: str) -> bool:
    """False when one side is a list/tuple (a comma that is no thousands separator) and the other is not
    or has another length: math-verify reads `1,2` as 12 in some contexts, which must not count."""
    def items(v: str) -> int:
        v = normalize_answer(v)
        depth, count = 0, 1
        for ch in v:
            depth += ch in "([{"
            depth -= ch in ")]}"
            count += ch == "," and depth <= 1
        return count

    return items(gold) == items(answer)


def _integer_value(value: str) -> int | None:
    value = normalize_answer(value)
    return int(value) if re.fullmatch(r"[+-]?\d+", value) else None


# --------------------------------------------------------------------------------- multiple choice

_CHOICE_PATTERNS = [
    # \boxed{B}, \boxed{(B)}, \boxed{\text{B}}
    re.compile(r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{)?\s*\(?([A-D])\)?\s*\}?\s*\}"),
    # **B**, **(B)**, **B)**
    re.compile(r"\*\*\s*\(?([A-D])\)?\s*\*\*"),
    # answer: B / the answer is (B) / option B / choice: C / correct option is B / answer is option D
    re.compile(r"(?i:answer|option|choice)\s*(?i:is)?\s*[:：]?\s*(?i:option|choice)?\s*\(?([A-D])\)?(?![A-Za-z0-9])"),
    # B is correct / (B) is the right answer
    re.compile(r"(?<![A-Za-z])\(?([A-D])\)?\s+(?i:is)\s+(?i:the\s+)?(?i:correct|right|best|answer)"),
    # a line holding only the letter: "B", "(B)", "B.", "B)"
    re.compile(r"(?m)^\s*\(?([A-D])[\).:]?\s*$"),
]


def choice_letter(text: str) -> str | None:
    """The letter the text commits to; of all the phrasings found, the last one in the text wins."""
    found = [(m.start(1), m.group(1)) for p in _CHOICE_PATTERNS for m in p.finditer(text)]
    return max(found)[1] if found else None


# ------------------------------------------------------------------------------------------ grading

def _grade(kind: str, gold: str, text: str) -> Grade:
    if kind == "choice":
        letter = choice_letter(text)
        want = gold.strip().upper()
        if letter is None:
            return Grade(None, False, "no choice letter found")
        return Grade(letter, letter == want, f"chose {letter}, correct is {want}")
    answer, where = extract(text)
    if answer is None:
        return Grade(None, False, where)
    if kind == "integer":
        value = _integer_value(answer)
        if value is not None:
            ok = value == int(gold)
            return Grade(answer, ok, f"{where}: integer {value} {'=' if ok else '!='} {int(gold)}")
        ok, why = _math_equal(str(int(gold)), answer)
        return Grade(answer, ok, f"{where}: {why}")
    ok, why = _math_equal(gold, answer)
    return Grade(answer, ok, f"{where}: {why}")


def _equivalent(kind: str, a: str, b: str) -> bool:
    if kind == "choice":
        return a.strip().upper() == b.strip().upper()
    if kind == "integer":
        x, y = _integer_value(a), _integer_value(b)
        if x is not None and y is not None:
            return x == y
    return _math_equal(a, b)[0]


def _classes(kind: str, answers: list[str | None]) -> list[int | None]:
    """Equivalence classes of answers (index of the first member), None for no answer."""
    reps: list[int] = []
    out: list[int | None] = []
    for i, a in enumerate(answers):
        if not a:
            out.append(None)
            continue
        for r in reps:
            try:
                same = answers[r] == a or _equivalent(kind, answers[r], a)
            except Exception:
                same = normalize_answer(answers[r]) == normalize_answer(a)
            if same:
                out.append(r)
                break
        else:
            reps.append(i)
            out.append(i)
    return out


def _grade_batch(items: list[tuple[str, str, str]]) -> list[dict]:
    out = []
    for kind, gold, text in items:
        try:
            out.append(_grade(kind, gold, text).to_dict())
        except Exception as exc:  # a grader bug or math-verify's own timeout: this sample, not the run
            out.append(Grade(None, False, f"grading failed: {exc.__class__.__name__}").to_dict())
    return out


def _watch_parent(parent: int) -> None:
    """Runs in each worker: exit as soon as the process that started it is gone (SIGKILL included)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="s1-parent-watch").start()


class Grader:
    """Grades in a worker process; call `close` (or use as a context manager) when done."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self._pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker now: a finished or interrupted run must leave no process behind."""
        self._kill()

    def _kill(self) -> None:
        if self._pool is not None:
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            for process in processes:
                if process.is_alive():
                    process.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.join(timeout=5)
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
            return [Grade(**g) for g in self._run(_grade_batch, items, timeout=self.timeout * len(items))]
        except (cf.TimeoutError, cf.process.BrokenProcessPool):
            self._kill()
        if len(items) == 1:
            extracted = extract(items[0][2])[0] if items[0][0] != "choice" else None
            return [Grade(extracted and extracted[:200], False, "grading timed out or crashed; counted wrong")]
        return [g for item in items for g in self.grade_many([item])]

    def classes(self, kind: str, answers: list[str | None]) -> list[int | None]:
        """Group answers by equivalence (for majority voting); on a hang, fall back to normalized text."""
        if kind not in KINDS:
            raise ValueError(f"unknown answer kind {kind!r}")
        try:
            return self._run(_classes, kind, answers, timeout=self.timeout * max(1, len(answers)))
        except (cf.TimeoutError, cf.process.BrokenProcessPool):
            self._kill()
        keys = [normalize_answer(a) if a else None for a in answers]
        return [None if k is None else keys.index(k) for k in keys]

    def _run(self, fn, *args, timeout: float):
        with self._lock:
            if self._pool is None:
                self._pool = cf.ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_watch_parent, initargs=(os.getpid(),),
                )
            future = self._pool.submit(fn, *args)
        return future.result(timeout=timeout)
