"""The curation store: one SQLite file in the run directory.

Why SQLite: a pool of 59K questions and days of model calls must survive a crash at any moment. Each
write is a transaction, so a killed run leaves every finished row and every finished model call on disk,
and a re-run reads them back. Tables:
- `questions`: one row per pool question, a column group per stage (the drop mark says which stage
  dropped a row and by which rule);
- `calls`: every model call, keyed by (role's model, engine, settings, prompt), with its reply; a call is
  marked pending before it is sent and done when its reply is stored, so the report can tell calls
  re-sent because a run died while they were in flight from calls repeated although answered (never);
- `memo`: cached results of deterministic non-model work (grades, token counts);
- `stage_runs`: when each stage ran and what it counted, for the report.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from s1.core.files import write_failure
from s1.core.rundir import claim_directory, unlock_directory

STORE = "curate.sqlite"
STAGES = ("collect", "decontaminate", "traces", "quality", "difficulty", "diversity", "select", "export")

QUESTION_COLUMNS = {
    "id": "TEXT PRIMARY KEY",
    "position": "INTEGER",
    "source": "TEXT",
    "question": "TEXT",
    "solution": "TEXT",
    "answer": "TEXT",
    "cot_type": "TEXT",
    "metadata": "TEXT",
    "dropped_by": "TEXT",
    "drop_rule": "TEXT",
    "thinking": "TEXT",
    "attempt": "TEXT",
    "trace_error": "TEXT",
    "trace_tokens": "INTEGER",
    "trace_tokenizer": "TEXT",
    "solver_correct": "TEXT",
    "teacher_correct": "INTEGER",
    "domain": "TEXT",
    "selected": "INTEGER",
}
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS questions ({", ".join(f"{k} {v}" for k, v in QUESTION_COLUMNS.items())});
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, role TEXT, request TEXT, reply TEXT, status TEXT,
    sent INTEGER DEFAULT 0, repeated INTEGER DEFAULT 0, error TEXT, updated REAL);
CREATE TABLE IF NOT EXISTS memo (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS stage_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT, started REAL, finished REAL,
    counts TEXT);
"""


def later_stages(stage: str) -> tuple[str, ...]:
    return STAGES[STAGES.index(stage) + 1 :]


class Store:
    """Open with `with Store(directory) as store:`; holds the directory's lock while open."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / STORE
        self._lock_file = None
        self._write = threading.Lock()
        self.db: sqlite3.Connection | None = None

    def __enter__(self) -> Store:
        self._lock_file = claim_directory(self.directory, "curate")
        try:
            with self._failing_writes():
                self.db = sqlite3.connect(self.path, check_same_thread=False)
                self.db.row_factory = sqlite3.Row
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
        except BaseException:
            self.__exit__()
            raise
        return self

    @contextlib.contextmanager
    def _writing(self):
        """One transaction, one writer at a time; a write the disk refuses is one sentence (the transaction is
        rolled back, so every earlier row and call stays as it was)."""
        with self._failing_writes(), self._write, self.db:
            yield

    @contextlib.contextmanager
    def _failing_writes(self):
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if any(w in text for w in ("disk is full", "readonly", "read-only", "disk I/O error", "unable to open")):
                raise write_failure(self.path, exc) from None
            raise

    def __exit__(self, *exc) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        unlock_directory(self._lock_file)
        self._lock_file = None

    # -- questions ---------------------------------------------------------------------------------
    def add_questions(self, rows: list[dict]) -> int:
        """Insert new rows (an id already present is left as it is); returns how many were new."""
        names = [c for c in QUESTION_COLUMNS if c in rows[0]] if rows else []
        before = self.count()
        with self._writing():
            self.db.executemany(
                f"INSERT OR IGNORE INTO questions ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [tuple(r[n] for n in names) for r in rows],
            )
        return self.count() - before

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM questions").fetchone()[0]

    def rows(self, stage: str | None = None, columns: str = "*") -> list[sqlite3.Row]:
        """All rows in pool order; with `stage`, the rows that stage works on: not dropped by it or an
        earlier stage (a later stage's drop is its own business and is kept)."""
        query = f"SELECT {columns} FROM questions"
        args: tuple = ()
        if stage is not None:
            later = later_stages(stage) + (stage,)
            query += f" WHERE dropped_by IS NULL OR dropped_by IN ({', '.join('?' * len(later))})"
            args = later
        return self.db.execute(query + " ORDER BY position", args).fetchall()

    def alive(self, columns: str = "*") -> list[sqlite3.Row]:
        return self.db.execute(f"SELECT {columns} FROM questions WHERE dropped_by IS NULL ORDER BY position").fetchall()

    def set_drops(self, stage: str, drops: dict[str, str], considered: list[str]) -> None:
        """Mark `drops` (id -> rule) as dropped by `stage` and clear the stage's old marks on the other rows
        it considered, so re-running a stage with other settings gives exactly its new verdict. A later
        stage's mark on a row this stage keeps stays: that verdict is the later stage's to change."""
        with self._writing():
            self.db.executemany(
                "UPDATE questions SET dropped_by = NULL, drop_rule = NULL WHERE id = ? AND dropped_by = ?",
                [(i, stage) for i in considered if i not in drops],
            )
            self.db.executemany(
                "UPDATE questions SET dropped_by = ?, drop_rule = ? WHERE id = ?",
                [(stage, rule, i) for i, rule in drops.items()],
            )

    def update(self, values: dict[str, dict]) -> None:
        """id -> {column: value} for many rows in one transaction."""
        by_columns: dict[tuple, list] = {}
        for row_id, cols in values.items():
            by_columns.setdefault(tuple(sorted(cols)), []).append((row_id, cols))
        with self._writing():
            for names, items in by_columns.items():
                sets = ", ".join(f"{n} = ?" for n in names)
                self.db.executemany(
                    f"UPDATE questions SET {sets} WHERE id = ?",
                    [tuple(cols[n] for n in names) + (row_id,) for row_id, cols in items],
                )

    def set_selected(self, ids: list[str]) -> None:
        """The chosen rows, in the order chosen; every earlier choice is cleared."""
        with self._writing():
            self.db.execute("UPDATE questions SET selected = NULL WHERE selected IS NOT NULL")
            self.db.executemany("UPDATE questions SET selected = ? WHERE id = ?", list(enumerate(ids)))

    def selected(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM questions WHERE selected IS NOT NULL ORDER BY selected").fetchall()

    # -- model calls -------------------------------------------------------------------------------
    def replies(self, keys: list[str]) -> dict[str, dict]:
        """Stored replies for the keys that have one."""
        found = {}
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            query = f"SELECT key, reply FROM calls WHERE status = 'done' AND key IN ({', '.join('?' * len(chunk))})"
            for row in self.db.execute(query, chunk):
                found[row["key"]] = json.loads(row["reply"])
        return found

    def call_sent(self, key: str, role: str, request: dict) -> None:
        """Before a call goes out: count it, and count it as repeated if its reply was already stored."""
        with self._writing():
            self.db.execute(
                "INSERT INTO calls (key, role, request, status, sent, updated) VALUES (?, ?, ?, 'pending', 1, ?) "
                "ON CONFLICT(key) DO UPDATE SET sent = sent + 1, repeated = repeated + (status = 'done'), "
                "status = CASE WHEN status = 'done' THEN 'done' ELSE 'pending' END, updated = excluded.updated",
                (key, role, json.dumps(request, ensure_ascii=False), time.time()),
            )

    def call_done(self, key: str, reply: dict) -> None:
        with self._writing():
            self.db.execute(
                "UPDATE calls SET status = 'done', reply = ?, error = NULL, updated = ? WHERE key = ?",
                (json.dumps(reply, ensure_ascii=False), time.time(), key),
            )

    def call_failed(self, key: str, error: str) -> None:
        with self._writing():
            self.db.execute(
                "UPDATE calls SET status = 'failed', error = ?, updated = ? WHERE key = ? AND status != 'done'",
                (error, time.time(), key),
            )

    def call_stats(self) -> dict:
        stats = {}
        query = (
            "SELECT role, COUNT(*) AS keys, SUM(sent) AS sent, SUM(repeated) AS repeated, "
            "SUM(CASE WHEN sent > 1 THEN sent - 1 - repeated ELSE 0 END) AS resent, "
            "SUM(status = 'done') AS answered, SUM(status = 'failed') AS failed FROM calls GROUP BY role"
        )
        for row in self.db.execute(query):
            stats[row["role"]] = {
                k: int(row[k] or 0) for k in ("keys", "sent", "answered", "failed", "repeated", "resent")
            }
        return stats

    # -- memo and stage runs -----------------------------------------------------------------------
    def memo(self, keys: list[str]) -> dict[str, object]:
        found = {}
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            for row in self.db.execute(
                f"SELECT key, value FROM memo WHERE key IN ({', '.join('?' * len(chunk))})", chunk
            ):
                found[row["key"]] = json.loads(row["value"])
        return found

    def put_memo(self, values: dict[str, object]) -> None:
        with self._writing():
            self.db.executemany(
                "INSERT OR REPLACE INTO memo (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def record_stage(self, stage: str, started: float, counts: dict) -> None:
        with self._writing():
            self.db.execute(
                "INSERT INTO stage_runs (stage, started, finished, counts) VALUES (?, ?, ?, ?)",
                (stage, started, time.time(), json.dumps(counts, ensure_ascii=False)),
            )

    def stage_counts(self) -> dict[str, dict]:
        """The latest counts of each stage that has run."""
        latest = {}
        for row in self.db.execute("SELECT stage, counts, started, finished FROM stage_runs ORDER BY id"):
            latest[row["stage"]] = {**json.loads(row["counts"]), "seconds": round(row["finished"] - row["started"], 2)}
        return latest
