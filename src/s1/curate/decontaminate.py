"""Stage 2, decontaminate: drop pool questions that share a word n-gram (8 by default; lowercased,
whitespace collapsed) with any evaluation question, or with a question of an earlier source.

A text shorter than n words counts as one n-gram of all its words, so a short evaluation question
still matches its verbatim copy."""

from __future__ import annotations

import re
from pathlib import Path

from s1.core.errors import UserError
from s1.data.benchmarks import available_tasks, get_task, read_rows, task_rows

STAGE = "decontaminate"
QUESTION_FIELDS = ("problem", "question", "Question", "prompt")


def ngrams(text: str, n: int) -> set[int]:
    words = text.lower().split()
    if len(words) < n:
        return {hash(" ".join(words))} if words else set()
    return {hash(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)}


def eval_questions(name: str, config) -> list[str]:
    """Questions of an evaluation set: a file (relative to the config), or a benchmark of `s1 eval`."""
    path = config.path(name)
    if path.suffix.lower() in (".jsonl", ".json", ".csv", ".parquet") or path.is_file():
        if not path.is_file():
            raise UserError(f"Evaluation set file {path} does not exist; fix eval_sets in the config.")
        rows, field = read_rows(path), None
    else:
        try:
            task = get_task(name)
        except UserError:
            raise UserError(
                f"eval_sets names {name!r}, which is neither a benchmark of s1 eval ({', '.join(available_tasks())}) "
                "nor an existing file; fix eval_sets in the config."
            ) from None
        data_dir = str(config.path(config.data_dir)) if config.data_dir else None
        rows = task_rows(task, data_dir)
        named = re.match(r"\s*\{\{\s*(\w+)", task.doc_to_text)
        field = named.group(1) if named else None
    questions = []
    for row in rows:
        key = field if field in row else next((f for f in QUESTION_FIELDS if f in row), None)
        if key is None:
            raise UserError(
                f"Evaluation set {name} has records without a question field ({', '.join(QUESTION_FIELDS)})."
            )
        questions.append(str(row[key]))
    return questions


def run(ctx) -> dict:
    config, store = ctx.config, ctx.store
    n = config.ngram
    seen: dict[int, str] = {}
    for name in config.eval_sets:
        for question in eval_questions(name, config):
            for gram in ngrams(question, n):
                seen.setdefault(gram, f"eval:{Path(name).stem if Path(name).suffix else name}")
    rows = store.rows(STAGE, "id, source, question")
    order = [s.name for s in config.sources]
    by_source: dict[str, list] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    drops: dict[str, str] = {}
    counts: dict = {"eval_ngrams": len(seen), "per_source": {}}
    for source in order + sorted(set(by_source) - set(order)):
        accepted: set[int] = set()
        tally: dict[str, int] = {}
        for row in by_source.get(source, []):
            grams = ngrams(row["question"] or "", n)
            hit = next((seen[g] for g in grams if g in seen), None)
            if hit is not None:
                drops[row["id"]] = hit if hit.startswith("eval:") else f"overlaps source {hit}"
                tally[drops[row["id"]]] = tally.get(drops[row["id"]], 0) + 1
            else:
                accepted |= grams
        for gram in accepted:  # later sources are checked against this one; a source is not checked against itself
            seen.setdefault(gram, source)
        counts["per_source"][source] = {"checked": len(by_source.get(source, [])), "dropped": tally}
    store.set_drops(STAGE, drops, [r["id"] for r in rows])
    counts["dropped"] = len(drops)
    return counts
