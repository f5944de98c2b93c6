"""Stage 4, quality: the paper's rules on the question text, and rows missing what training needs.

The question rules also run before the teacher is called (stage 3), so no trace is paid for a question
that this stage will drop."""

from __future__ import annotations

import re

STAGE = "quality"

IMAGE = re.compile(r"!\[Image\]|!\[[^\]]*\]\([^)]*\)", re.IGNORECASE)
"""An image the model cannot see: the paper's `![Image]`, and any Markdown image."""
NUMBERING = re.compile(r"(?<![A-Za-z0-9])p[1-9][0-9]{0,2}\.")
"""A problem-numbering marker p1. to p999. The paper matched the bare substring, which also dropped
"step1." and "map2."; here the p must start a word."""
BOLD_DIGITS = re.compile(r"\*\*(?=.*\d)[^\s\]]*\*\*")
"""The paper's bold-with-digits pattern, as it wrote it."""


def question_rule(question: str | None, source: str) -> str | None:
    """The first rule a question breaks, or None."""
    if not question or not question.strip():
        return "empty question"
    if IMAGE.search(question):
        return "image"
    if "[asy]" in question and "aime" not in source.lower():
        return "asymptote"
    if NUMBERING.search(question):
        return "numbering"
    if BOLD_DIGITS.search(question):
        return "bold with digits"
    return None


def row_rule(row) -> str | None:
    """The first rule a pool row with its trace breaks, or None."""
    rule = question_rule(row["question"], row["source"])
    if rule:
        return rule
    if row["trace_error"]:
        return "teacher call failed"
    if not (row["thinking"] or "").strip():
        return "no trace"
    if not (row["attempt"] or "").strip():
        return "no attempt"
    if not (row["solution"] or "").strip() and not (row["answer"] or "").strip():
        return "no reference"
    return None


def run(ctx) -> dict:
    store = ctx.store
    rows = store.rows(STAGE, "id, source, question, solution, answer, thinking, attempt, trace_error")
    drops = {}
    for row in rows:
        rule = row_rule(row)
        if rule:
            drops[row["id"]] = rule
    store.set_drops(STAGE, drops, [r["id"] for r in rows])
    rules: dict[str, int] = {}
    for rule in drops.values():
        rules[rule] = rules.get(rule, 0) + 1
    return {"checked": len(rows), "dropped": len(drops), "rules": rules}
