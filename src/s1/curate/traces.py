"""Stage 3, traces: the teacher thinks and answers each question (thinking trace + attempt).

Questions that the quality rules will drop get no call, unless the selection takes the full pool (Table 2's
59K-full trains on them too, so they need traces). A failed call is marked on its row
(`trace_error`) and the quality stage drops the row; a re-run tries it again."""

from __future__ import annotations

from s1.curate.calls import Ask
from s1.curate.quality import question_rule

STAGE = "traces"
PROMPT = "{question}"


def run(ctx) -> dict:
    store, role = ctx.store, ctx.config.roles.teacher
    rows = store.rows(STAGE, "id, source, question, thinking, attempt, trace_error")
    everything = ctx.config.selection.strategy == "full"
    eligible = [r for r in rows if everything or question_rule(r["question"], r["source"]) is None]
    template = role.prompt or PROMPT
    caller = ctx.caller("teacher")
    asks = [Ask(template.replace("{question}", r["question"]), think=True) for r in eligible]
    with ctx.progress("traces", len(asks)) as advance:
        replies = caller.ask(asks, on_reply=advance)
    changes = {}
    for row, reply in zip(eligible, replies):
        thinking = reply["thinking"].strip() if reply else None
        attempt = reply["answer"].strip() if reply else None
        error = None if reply else "teacher call failed"
        if (thinking, attempt, error) != (row["thinking"], row["attempt"], row["trace_error"]):
            changes[row["id"]] = {
                "thinking": thinking,
                "attempt": attempt,
                "trace_error": error,
                "trace_tokens": None,
                "trace_tokenizer": None,
            }
    store.update(changes)
    return {
        "questions": len(rows),
        "skipped_by_question_rules": len(rows) - len(eligible),
        "failed": sum(r is None for r in replies),
        "calls": {caller.name: caller.tally.as_dict()},
    }
