"""Stage 5, difficulty: drop questions a solver model gets right; count trace length for selection.

Each solver answers each question (plain chat, no thinking). A reply is graded with math-verify when the
reference is a short answer, else by the judge model, which is asked for a final Yes or No (constrained
to those two where the engine allows it; otherwise a reply without one is retried, then counted as not
correct). Grades are memoized in the store, so a re-run grades nothing twice. With pre-selection the
teacher's own attempt is graded the same way. The trace is counted in the student's tokenizer.
"""

from __future__ import annotations

import json
import re

from s1.core.models import load_tokenizer
from s1.core.rundir import identity_hash
from s1.curate.calls import Ask

STAGE = "difficulty"
SOLVER_PROMPT = "{question}\n\nPut your final answer within \\boxed{}."
JUDGE_PROMPT = (
    "You are grading an attempt at a problem against the reference solution.\n\n"
    "Problem:\n{question}\n\nReference solution:\n{solution}\n\nAttempt:\n{attempt}\n\n"
    "Does the attempt reach the same final answer as the reference? "
    "Explain briefly, then write Yes or No alone on the last line."
)
VERDICT = ("Yes", "No")


def verdict(text: str | None) -> bool | None:
    """Yes -> True, No -> False, from the reply's last non-empty line; None if it has neither."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    words = set(re.findall(r"[a-z]+", lines[-1].lower()))
    if ("yes" in words) == ("no" in words):
        return None
    return "yes" in words


def short_reference(row, limit: int) -> str | None:
    answer = (row["answer"] or "").strip()
    return answer if answer and len(answer) <= limit else None


class Grading:
    """Grades attempts against a row's reference, math-verify or judge, memoized."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.judge = ctx.caller("judge")
        self.judged = 0
        self.verified = 0

    def grade(self, rows: list, attempts: list[str | None], label: str) -> list[bool | None]:
        limit = self.ctx.config.short_answer_chars
        results: list[bool | None] = [None] * len(rows)
        by_math = [i for i, r in enumerate(rows) if attempts[i] is not None and short_reference(r, limit)]
        math_set = set(by_math)
        by_judge = [i for i in range(len(rows)) if attempts[i] is not None and i not in math_set]
        self._verify(rows, attempts, by_math, results)
        self._judge(rows, attempts, by_judge, results, label)
        return results

    def _verify(self, rows, attempts, indices, results) -> None:
        limit = self.ctx.config.short_answer_chars
        keys = {i: identity_hash(["math-verify", short_reference(rows[i], limit), attempts[i]]) for i in indices}
        known = self.ctx.store.memo(list(set(keys.values())))
        todo = [i for i in indices if keys[i] not in known]
        if todo:
            grades = self.ctx.grader().grade_many(
                [("math", short_reference(rows[i], limit), attempts[i]) for i in todo]
            )
            fresh = {keys[i]: g.correct for i, g in zip(todo, grades)}
            self.ctx.store.put_memo(fresh)
            known.update(fresh)
        self.verified += len(indices)
        for i in indices:
            results[i] = bool(known[keys[i]])

    def _judge(self, rows, attempts, indices, results, label) -> None:
        role = self.judge.role
        template = role.prompt or JUDGE_PROMPT
        pending = list(indices)
        with self.ctx.progress(f"judge {label}", len(pending)) as advance:
            for attempt in range(role.retries + 1):
                if not pending:
                    break
                asks = [
                    Ask(
                        _fill(
                            template,
                            question=rows[i]["question"],
                            solution=rows[i]["solution"] or rows[i]["answer"] or "",
                            attempt=attempts[i],
                        ),
                        attempt=attempt,
                        choices=VERDICT,
                        reply_prefix="Verdict:",
                    )
                    for i in pending
                ]
                replies = self.judge.ask(asks)
                left = []
                for i, reply in zip(pending, replies):
                    found = None
                    if reply is not None:
                        found = (reply["answer"] == "Yes") if reply.get("constrained") else verdict(reply["answer"])
                    if found is None and attempt < role.retries:
                        left.append(i)
                    else:
                        results[i] = found
                        advance(1)
                pending = left
        self.judged += len(indices)


def _fill(template: str, **values: str) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def trace_lengths(ctx) -> int:
    """Count each trace in the student's tokenizer (only traces not counted in it yet)."""
    student = ctx.config.student
    rows = [
        r
        for r in ctx.store.rows(STAGE, "id, thinking, trace_tokens, trace_tokenizer")
        if r["thinking"] and (r["trace_tokens"] is None or r["trace_tokenizer"] != student)
    ]
    if not rows:
        return 0
    tokenizer, _ = load_tokenizer(student)
    counts = tokenizer([r["thinking"] for r in rows], add_special_tokens=False)["input_ids"]
    ctx.store.update({r["id"]: {"trace_tokens": len(ids), "trace_tokenizer": student} for r, ids in zip(rows, counts)})
    return len(rows)


def run(ctx) -> dict:
    config, store = ctx.config, ctx.store
    counted = trace_lengths(ctx)
    rows = store.rows(STAGE, "id, source, question, solution, answer, attempt, solver_correct, teacher_correct")
    grading = Grading(ctx)
    verdicts: list[list[bool | None]] = []
    solvers = []
    for number, role in enumerate(config.roles.solvers):
        caller = ctx.caller(f"solver{number}")
        solvers.append(caller)
        template = role.prompt or SOLVER_PROMPT
        asks = [Ask(template.replace("{question}", r["question"])) for r in rows]
        with ctx.progress(f"solver {number} ({role.model})", len(asks)) as advance:
            replies = caller.ask(asks, on_reply=advance)
        verdicts.append(grading.grade(rows, [r["answer"] if r else None for r in replies], f"solver {number}"))
    changes, drops = {}, {}
    for i, row in enumerate(rows):
        correct = [v[i] for v in verdicts]
        changes[row["id"]] = {"solver_correct": json.dumps(correct)}
        solved = [n for n, c in enumerate(correct) if c]
        if solved:
            drops[row["id"]] = "solved"
    teacher_graded = 0
    if config.selection.preselect:
        pre = config.selection.preselect
        wanted = set(pre.sources) | set(pre.long_sources)
        graded = [r for r in rows if r["source"] in wanted]
        for row, ok in zip(graded, grading.grade(graded, [r["attempt"] for r in graded], "teacher")):
            changes[row["id"]]["teacher_correct"] = None if ok is None else int(ok)
        teacher_graded = len(graded)
    store.update(changes)
    store.set_drops(STAGE, drops, [r["id"] for r in rows])
    calls = {c.name: c.tally.as_dict() for c in solvers + [grading.judge]}
    return {
        "checked": len(rows),
        "dropped": len(drops),
        "kept": len(rows) - len(drops),
        "solved_by": {c.name: sum(bool(v[i]) for i in range(len(rows))) for c, v in zip(solvers, verdicts)},
        "graded_by_math_verify": grading.verified,
        "graded_by_judge": grading.judged,
        "teacher_graded": teacher_graded,
        "traces_counted": counted,
        "calls": calls,
    }
