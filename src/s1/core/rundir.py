"""A run directory: history.jsonl, samples.jsonl (append-only, one line per finished sample), summary.

Why it is built this way:
- Each sample is written, flushed and fsynced the moment it is graded, so a run killed at any moment
  loses at most the samples in flight; a torn last line is cut off on the next start.
- Each sample carries an identity: a hash of everything that changes it (model, engine, format,
  decoding, the setting's full forcing parameters, the problem's prompt, gold answer and grading kind,
  the sample index). A resumed run reuses a sample only when the identity matches; anything else is
  generated again. Nothing is ever deleted: a superseded sample stays in the file, unused.
- Every invocation's configuration is appended to history.jsonl, never overwritten.
- A lock file (flock, released by the kernel even on SIGKILL) stops two runs writing one directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from s1.core.errors import UserError, named

SAMPLES = "samples.jsonl"
HISTORY = "history.jsonl"
LOCK = ".lock"


def identity_hash(value) -> str:
    """A short, stable hash of a JSON-serializable value."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def make_directory(path: Path, option: str = "--output", what: str = "s1") -> Path:
    """Create the directory a command writes into, or say in one sentence why it cannot be there."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; {what} writes a directory there, so choose another {option}.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create {option} {path} ({exc.strerror or exc}); choose a writable place.") from None
    return path


def lock_directory(path: Path, what: str):
    """Create `path` and hold its lock file (flock: the kernel frees it even after SIGKILL), or say who holds it."""
    make_directory(path, what=what)
    try:
        handle = open(path / LOCK, "a+")
    except OSError as exc:
        raise UserError(
            f"Cannot write to output directory {path} ({exc.strerror}); choose another {named('output')}."
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"Another {what} ({holder}) is writing to {path}; wait for it to finish or choose another "
            f"{named('output')}."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def unlock_directory(handle) -> None:
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.samples = self.path / SAMPLES
        self.skipped_lines = 0
        self._lock_file = None

    # -- opening and locking -----------------------------------------------------------------------
    def open(self) -> RunDir:
        """Create the directory, take its lock and repair a torn last line; one clear error for each failure."""
        self._lock_file = lock_directory(self.path, "s1 eval")
        self._repair()
        return self

    def close(self) -> None:
        unlock_directory(self._lock_file)
        self._lock_file = None

    def __enter__(self) -> RunDir:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _repair(self) -> None:
        """Cut a line torn by a crash, so appending continues on a clean line boundary."""
        if not self.samples.exists():
            return
        data = self.samples.read_bytes()
        if data and not data.endswith(b"\n"):
            self.samples.write_bytes(data[: data.rfind(b"\n") + 1])

    # -- reading and writing -----------------------------------------------------------------------
    def records(self) -> dict[str, dict]:
        """Finished samples by identity; the last copy wins. Unreadable lines (bad JSON, bad UTF-8,
        records of an older layout) are skipped and counted in `skipped_lines`."""
        found: dict[str, dict] = {}
        self.skipped_lines = 0
        if not self.samples.exists():
            return found
        for raw in self.samples.read_bytes().splitlines():
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                found[record["identity"]] = record
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
                self.skipped_lines += 1
        return found

    def append(self, record: dict) -> None:
        with self.samples.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def log_invocation(self, config: dict) -> None:
        """One line per invocation: when, the command line and the whole configuration."""
        from s1 import __version__

        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv,
            "s1_version": __version__,
            "config": config,
        }
        with (self.path / HISTORY).open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    def write(self, name: str, text: str) -> Path:
        return write_atomic(self.path / name, text)


def write_atomic(target: Path, text: str) -> Path:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target
