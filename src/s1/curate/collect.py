"""Stage 1, collect: every source into one schema (`id, source, question, solution, answer, cot_type,
metadata`), exact duplicate questions dropped (the first copy, in source order, is kept)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from s1.core.errors import UserError
from s1.curate.config import Source
from s1.data.benchmarks import read_rows

STAGE = "collect"
DEFAULT_FIELDS = {
    "question": ("question", "problem", "Question", "prompt"),
    "solution": ("solution", "Solution", "response"),
    "answer": ("answer", "final_answer", "Answer", "gt"),
    "id": ("id", "unique_id", "idx", "Record ID"),
    "cot_type": ("cot_type",),
}


def _text(value) -> str | None:
    """Pool fields are text: lists (OlympiadBench's final_answer) are joined, numbers written out; a missing
    value (JSON null, an empty CSV cell, a Parquet NaN) stays missing, never the text "None" or "nan"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (list, tuple)):
        parts = [_text(v) for v in value]
        return "\n".join(p for p in parts if p) or None
    return value if isinstance(value, str) else str(value)


def read_source(source: Source, base: Path) -> list[dict]:
    if source.path is not None:
        path = Path(source.path).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise UserError(
                f"Source {source.name!r}: file {path} does not exist; fix its path (relative to the config file)."
            )
        return read_rows(path)
    try:
        import datasets

        return [dict(r) for r in datasets.load_dataset(source.hub, source.subset, split=source.split)]
    except Exception as exc:  # offline, gated or missing: all mean "give me a local file"
        raise UserError(
            f"Source {source.name!r}: could not load {source.hub} from the hub ({exc.__class__.__name__}); "
            "download it and give its path instead."
        ) from None


def _field(row: dict, source: Source, name: str) -> tuple[str | None, str | None]:
    """(value, the source field it came from) for one pool field."""
    if name in source.fields:
        wanted = source.fields[name]
        if wanted not in row:
            raise UserError(
                f"Source {source.name!r} has no field {wanted!r} (mapped to {name}); its fields are "
                f"{', '.join(map(str, row))}."
            )
        return _text(row[wanted]), wanted
    for candidate in DEFAULT_FIELDS[name]:
        if candidate in row:
            return _text(row[candidate]), candidate
    return None, None


def check_questions(source: Source, raw: list[dict]) -> None:
    """A source must have records and a question field; otherwise collect would add nothing and say nothing."""
    if not raw:
        raise UserError(f"Source {source.name!r} holds no records; check its path, or remove it from the config.")
    if "question" in source.fields:
        return
    if not any(name in record for record in raw for name in DEFAULT_FIELDS["question"]):
        fields = sorted({str(k) for record in raw[:100] for k in record})
        raise UserError(
            f"Source {source.name!r} has no question field (looked for {', '.join(DEFAULT_FIELDS['question'])}); its "
            f"fields are {', '.join(fields) or 'none'}, so map one in the config with fields: {{question: NAME}}."
        )


def pool_rows(source: Source, raw: list[dict], start: int) -> list[dict]:
    """One source's records in the pool schema; ids are `source/id` (or `source/row number`)."""
    check_questions(source, raw)
    rows, ids = [], set()
    for number, record in enumerate(raw[: source.limit] if source.limit else raw):
        values, used = {}, set()
        for name in DEFAULT_FIELDS:
            values[name], field = _field(record, source, name)
            used.add(field)
        local = values["id"] if values["id"] is not None else str(number)
        if local in ids:
            raise UserError(
                f"Source {source.name!r} has id {local!r} twice; map a unique id field (fields: id: ...) "
                "or none, and rows are numbered."
            )
        ids.add(local)
        metadata = {k: v for k, v in record.items() if k not in used}
        rows.append(
            {
                "id": f"{source.name}/{local}",
                "position": start + number,
                "source": source.name,
                "question": values["question"],
                "solution": values["solution"],
                "answer": values["answer"],
                "cot_type": values["cot_type"] or source.cot_type,
                "metadata": json.dumps(metadata, ensure_ascii=False, default=str),
            }
        )
    return rows


def run(ctx) -> dict:
    config, store = ctx.config, ctx.store
    counts: dict = {"per_source": {}}
    start = 0
    for source in config.sources:
        raw = read_source(source, Path(config.base_dir))
        rows = pool_rows(source, raw, start)
        start += len(raw)
        added = store.add_questions(rows) if rows else 0
        counts["per_source"][source.name] = {"read": len(rows), "new": added}
    first: dict[str, str] = {}
    drops: dict[str, str] = {}
    considered = []
    for row in store.rows(STAGE, "id, question"):
        considered.append(row["id"])
        text = (row["question"] or "").strip()
        if not text:
            continue  # the quality stage drops empty questions, with its own rule
        if text in first:
            drops[row["id"]] = "duplicate"
        else:
            first[text] = row["id"]
    store.set_drops(STAGE, drops, considered)
    counts["pool"] = store.count()
    counts["duplicates"] = len(drops)
    return counts
