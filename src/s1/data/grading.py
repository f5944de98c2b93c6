"""Answer extraction and equivalence: math by math-verify, AIME by integer, GPQA by letter.

Why it is built this way:
- Equivalence is math-verify's, guarded by an item count (a list `1,2` is never the number 12, while a
  thousands separator `10,000` or `\\$1,450,000` is one number). The text fallback compares answers with
  formatting removed but every comma kept, so it never calls two different tuples or numbers equal.
- math-verify bounds its work with signal.alarm, which only works on a process's main thread and cannot
  stop a crash; so every check runs in a worker process's main thread, and a worker that hangs past a
  wall-clock limit is killed and replaced. A pathological expression costs one sample a "timeout",
  never the run.
- The worker is an interpreter of its own (grading_worker.py) talking JSON over pipes, not a
  multiprocessing child: it never re-imports the caller's script, so a script that grades needs no
  `if __name__ == "__main__":`. It watches its parent: when it dies, even by SIGKILL, the worker exits
  within a second, so a killed run leaves nothing behind.

One concern, so one module past 400 lines: whether an answer is right, for every answer kind.
"""

from __future__ import annotations

import json
import os
import re
import select
import threading
import time
from dataclasses import asdict, dataclass

KINDS = ("math", "integer", "choice")
# Stored with every grade; a run directory regrades samples graded by another version.
GRADER_VERSION = 2
CHOICE_LETTERS = "ABCDEFGHIJ"


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


_ANSWER_LINE = re.compile(r"(?:final\s+answer|answer)\s*(?:is\s*)?[:：]\s*(.+)|\banswer\s+is\s+(.+)", re.IGNORECASE)
_ANSWER_PHRASE = re.compile(r"^\W*(?:the\s+)?(?:final\s+)?answer\W*(?:is)?\s*[:：]?\W*$", re.IGNORECASE)
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
        value = _answer_value(_ANSWER_PHRASE.sub("", lines[-1]))
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

_UNITS = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{[^{}]*\}|\\?\$|\\?%")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def normalize_answer(value: str) -> str:
    """An answer without math delimiters, \\text{} wrappers, spacing, \\left/\\right or degree signs.

    Commas stay: only a whole number written with thousands separators (`10,000`, `10{,}000`) loses them.
    So `1,2`, `(1,2)` and `12` stay three different strings.
    """
    value = _clean(value)
    if _THOUSANDS.fullmatch(re.sub(r"\s+", "", _UNITS.sub("", value))):  # `\$1,450,000`, `10,000\%`
        value = value.replace(",", "")
    value = re.sub(r"\\(?:text|mathrm|textbf|mbox|operatorname)\{([^{}]*)\}", r"\1", value)
    value = value.replace("{,}", ",").replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    value = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", value)
    value = re.sub(r"\\[dt]frac", r"\\frac", value)
    value = re.sub(r"\^\{?\\circ\}?|°", "", value)
    value = re.sub(r"(?<=\d)\s+(?=\d)", "|", value)  # `1 2` is not 12
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
    """False when the two sides hold a different number of items (a comma that is no thousands separator
    makes a list): math-verify reads `1,2` as 12 in some contexts, which must not count."""
    return _item_count(gold) == _item_count(answer)


def _item_count(value: str) -> int:
    """Items in an answer: a bare list or one wrapped in a single bracket pair counts its top-level commas;
    currency, percent signs and text units are ignored, and `1,450,000` is one number."""
    core = normalize_answer(_UNITS.sub("", value)).replace("\\{", "{").replace("\\}", "}")
    if _THOUSANDS.fullmatch(core):
        return 1
    if core[:1] in "([{" and _closing(core, 0) == len(core) - 1:
        core = core[1:-1]
    depth, count = 0, 1
    for ch in core:
        depth += ch in "([{"
        depth -= ch in ")]}"
        count += ch == "," and depth == 0
    return count


def _closing(text: str, start: int) -> int:
    """Index of the bracket closing the one at `start` (any of ([{ against any of )]}, as intervals mix them)."""
    depth = 0
    for i in range(start, len(text)):
        depth += text[i] in "([{"
        depth -= text[i] in ")]}"
        if depth == 0:
            return i
    return -1


def _integer_value(value: str) -> int | None:
    value = normalize_answer(value)
    return int(value) if re.fullmatch(r"[+-]?\d+", value) else None


# --------------------------------------------------------------------------------- multiple choice

_WRAPPED = r"(?:\$|\\\(|\\\[)?\s*(?:\\(?:text|textbf|mathrm|mathbf)\s*\{)?\s*\(?([{L}])\)?"


def _choice_patterns(letters: str) -> list[list[re.Pattern]]:
    """Phrasings that commit to a letter, strongest first: a boxed letter or an explicit answer statement,
    then looser mentions (`option B`, `B is correct`, `**B**`, a line holding only the letter)."""
    L = f"A-{letters[-1]}"
    letter = _WRAPPED.replace("{L}", L)
    explicit = [
        re.compile(r"\\boxed\s*\{\s*" + letter),
        re.compile(r"(?i:answer)\s*(?i:is)?\s*[:：]?\s*(?i:option|choice)?\s*" + letter + r"(?![A-Za-z0-9])"),
    ]
    loose = [
        re.compile(r"\*\*\s*\(?([" + L + r"])\)?\s*\*\*"),
        re.compile(r"(?i:option|choice)\s*(?i:is)?\s*[:：]?\s*" + letter + r"(?![A-Za-z0-9])"),
        re.compile(r"(?<![A-Za-z])\(?([" + L + r"])\)?\s+(?i:is)\s+(?i:the\s+)?(?i:correct|right|best|answer)"),
        re.compile(r"(?m)^\s*\(?([" + L + r"])[\).:]?\s*$"),
    ]
    return [explicit, loose]


def choice_letter(text: str, last_letter: str = "D") -> str | None:
    """The letter the text commits to: of the strongest kind of phrasing found, the last one in the text.
    Letters run from A to `last_letter` (the choices a task offers)."""
    for patterns in _choice_patterns(CHOICE_LETTERS[: max(4, CHOICE_LETTERS.index(last_letter) + 1)]):
        found = [(m.start(1), m.group(1)) for p in patterns for m in p.finditer(text)]
        if found:
            return max(found)[1]
    return None


# ------------------------------------------------------------------------------------------ grading


def _grade(kind: str, gold: str, text: str) -> Grade:
    if kind == "choice":
        want = gold.strip().upper()
        letter = choice_letter(text, want if want in CHOICE_LETTERS else "D")
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


def text_classes(answers: list[str | None]) -> list[int | None]:
    """Classes by normalized text: the fallback when equivalence cannot be computed."""
    keys = [normalize_answer(a) if a else None for a in answers]
    return [None if k is None else keys.index(k) for k in keys]


def _grade_batch(items: list[tuple[str, str, str]]) -> list[dict]:
    out = []
    for kind, gold, text in items:
        try:
            out.append(_grade(kind, gold, text).to_dict())
        except Exception as exc:  # a grader bug or math-verify's own timeout: this sample, not the run
            out.append(Grade(None, False, f"grading failed: {exc.__class__.__name__}").to_dict())
    return out


class GraderClosed(RuntimeError):
    """Grading was asked for after `close` (a run being interrupted): nothing is graded, nothing started."""


class _Hung(Exception):
    """The worker passed its deadline or died: it is killed, and a new one starts for the next call."""


class Grader:
    """Grades in a worker process; call `close` (or use as a context manager) when done.

    The worker is an interpreter of its own (`python -m s1.data.grading_worker`) that answers JSON lines
    over pipes, in a session of its own: unlike a `multiprocessing` worker it never imports the caller's
    script again (a script without `if __name__ == "__main__":` works), and Ctrl-C at the terminal reaches
    only the parent, which stops it."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self.restarts = 0
        """Workers killed at a deadline or found dead, for tests and logs."""
        self._worker = None
        self._lock = threading.Lock()
        """Held for one request and its reply: the worker answers one thing at a time."""
        self._closed = False

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker now: a finished or interrupted run must leave no process behind. A thread still
        grading gets `GraderClosed` instead of a grade, and no new worker is started (a grade of "crashed"
        would otherwise be recorded for good)."""
        self._closed = True
        worker = self._worker
        if worker is not None:
            worker.kill()  # a thread waiting for its reply sees the pipe close and lets go of the lock
        with self._lock:
            self._kill()

    def _kill(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    def grade(self, kind: str, gold: str, text: str) -> Grade:
        return self.grade_many([(kind, gold, text)])[0]

    def grade_many(self, items: list[tuple[str, str, str]]) -> list[Grade]:
        """Grade (kind, gold, text) triples; a batch that hangs is retried one item at a time."""
        if not items:
            return []
        for kind, gold, _ in items:
            if kind not in KINDS:
                raise ValueError(f"unknown answer kind {kind!r}")
            if not isinstance(gold, str) or not gold.strip():
                raise ValueError(f"a {kind} answer cannot be graded without a gold answer (got {gold!r})")
        try:
            return [Grade(**g) for g in self._run("grade", [list(i) for i in items], timeout=self.timeout * len(items))]
        except _Hung:
            pass
        if len(items) == 1:
            extracted = extract(items[0][2])[0] if items[0][0] != "choice" else None
            return [Grade(extracted and extracted[:200], False, "grading timed out or crashed; counted wrong")]
        return [g for item in items for g in self.grade_many([item])]

    def classes(self, kind: str, answers: list[str | None]) -> list[int | None]:
        """Group answers by equivalence (for majority voting); on a hang, fall back to normalized text."""
        if kind not in KINDS:
            raise ValueError(f"unknown answer kind {kind!r}")
        try:
            return self._run("classes", [kind, answers], timeout=self.timeout * max(1, len(answers)))
        except _Hung:
            return text_classes(answers)

    def _run(self, call: str, args: list, timeout: float):
        with self._lock:
            if self._closed:
                raise GraderClosed("the grader is closed")
            try:
                if self._worker is None:
                    self._worker = _Worker()
                    self._worker.wait_ready()
                return self._worker.ask(call, args, timeout)
            except (_Hung, OSError, ValueError) as exc:  # past its deadline, dead, or its pipes closed by `close`
                self._kill()
                if self._closed:
                    raise GraderClosed("the grader was closed while grading") from None
                if isinstance(exc, _Starting):
                    raise RuntimeError(
                        "The grading worker could not start (python -m s1.data.grading_worker); see the error above."
                    ) from None
                self.restarts += 1
                raise _Hung() from None


class _Starting(_Hung):
    """The worker never said it was ready."""


class _Worker:
    """One grading interpreter and its pipes."""

    STARTUP_SECONDS = 300
    """A worker may take this long to import math-verify on a loaded machine; past it, it is broken."""

    def __init__(self):
        import subprocess
        import sys

        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = f"import sys; sys.path.insert(0, {here!r}); from s1.data.grading_worker import main; main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C at the terminal goes to the parent, which stops the worker
        )
        self.buffer = b""

    def wait_ready(self) -> None:
        try:
            ready = self._reply(self.STARTUP_SECONDS)
        except _Hung:
            raise _Starting() from None
        if ready != "ready":
            raise _Starting()

    def ask(self, call: str, args: list, timeout: float):
        try:
            self.process.stdin.write(json.dumps({"call": call, "args": args}).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:  # it died since the last call
            raise _Hung() from None
        reply = self._reply(timeout)
        if "error" in reply:
            raise RuntimeError(f"grading failed in the worker: {reply['error']}")
        return reply["result"]

    def _reply(self, timeout: float):
        """The next JSON line from the worker, or _Hung at the deadline or when it died."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise _Hung()
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise _Hung()
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def stop(self) -> None:
        """Kill, reap and close the pipes (by the thread holding the grader's lock)."""
        self.kill()
        try:
            self.process.wait(timeout=5)
        except Exception:  # noqa: BLE001 - a process that will not die is left to the kernel
            pass
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass
