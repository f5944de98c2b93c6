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
- A directory knows which kind of run it holds (eval, curate, train, demo: a small marker file, or for
  directories written before the marker, the files that kind writes), and a command of another kind
  refuses it, so runs never mix their files or their history.jsonl.

The pieces are public for every command that writes a directory (`s1 curate`'s store, `s1 train`,
`s1 demo`), not only `RunDir`: `claim_directory` (lock + kind), `lock_directory` / `unlock_directory`
(one writer at a time), `append_history` (history.jsonl), `make_directory`, `write_atomic` and `identity_hash`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s1.core.errors import UserError, named
from s1.core.files import append_line, write_atomic, write_failure
from s1.core.version import __version__

SAMPLES = "samples.jsonl"
HISTORY = "history.jsonl"
LOCK = ".lock"
MARKER = ".s1-run.json"
KINDS = {"eval": "s1 eval", "curate": "s1 curate", "train": "s1 train", "demo": "s1 demo"}
"""Kinds of run directory -> the command that writes them."""


def identity_hash(value) -> str:
    """A short, stable hash of a JSON-serializable value."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def make_directory(path: Path, option: str = named("output"), what: str = "s1") -> Path:
    """Create the directory a command writes into, or say in one sentence why it cannot be there."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; {what} writes a directory there, so choose another {option}.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create {option} {path} ({exc.strerror or exc}); choose a writable place.") from None
    return path


def lock_directory(path: Path, what: str, option: str = named("output")):
    """Create `path` and hold its lock file (flock: the kernel frees it even after SIGKILL), or say who holds it;
    `option` is how the command's front end names the directory."""
    make_directory(path, option, what=what)
    try:
        handle = open(path / LOCK, "a+")
    except OSError as exc:
        raise UserError(f"Cannot write to output directory {path} ({exc.strerror}); choose another {option}.") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"Another {what} ({holder}) is writing to {path}; wait for it to finish or choose another {option}."
        ) from None
    try:  # who holds it, for the message above; the lock works without it (a full disk may refuse these bytes)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
    except OSError:
        pass
    return handle


def directory_kind(path: Path) -> str | None:
    """Which kind of run `path` holds: its marker, else what the files of a directory written before markers
    existed say (a curation store, eval samples or summary, a training recipe, checkpoints or final model)."""
    path = Path(path)
    try:
        kind = json.loads((path / MARKER).read_text(encoding="utf-8")).get("kind")
        if kind in KINDS:
            return kind
    except (OSError, ValueError, AttributeError):
        pass
    if (path / "curate.sqlite").exists():
        return "curate"
    if (path / SAMPLES).exists() or (path / "summary.json").exists():
        return "eval"
    if (path / "recipe.json").exists() or (path / "final" / "s1_train.json").exists() or (path / "ranks").is_dir():
        return "train"
    if any(p.name.split("-")[-1].isdigit() for p in path.glob("checkpoint-*")):
        return "train"
    if (path / "plan.json").exists() and (path / "data").is_dir():
        return "demo"
    try:
        with (path / HISTORY).open(encoding="utf-8") as f:
            first = json.loads(f.readline())
        return "curate" if "stages" in first else "eval"
    except (OSError, ValueError, TypeError):
        return None


def holds_model(path: Path) -> bool:
    """A model directory (config.json beside weights), such as `s1 train`'s final/ or a downloaded model: what a
    command's output is not, though `--output` and `--model` are easily swapped."""
    path = Path(path)
    weights = ("*.safetensors", "pytorch_model*.bin", "*.gguf", "model.safetensors.index.json")
    return (path / "config.json").is_file() and any(any(path.glob(pattern)) for pattern in weights)


def check_kind(path: Path, kind: str, option: str = named("output")) -> None:
    """Refuse, in one sentence, a directory that holds another kind of run, or a model."""
    if Path(path).is_dir() and holds_model(path):
        raise UserError(
            f"{path} holds a model (config.json and its weights), and {KINDS[kind]} does not write into a model "
            f"directory (its files would mix with the model's); choose another {option}."
        )
    found = directory_kind(path) if Path(path).is_dir() else None
    if found not in (None, kind):
        raise UserError(
            f"{path} holds an {KINDS[found]} run, and {KINDS[kind]} does not write into another kind of run "
            f"directory (their files and history.jsonl would mix); choose another {option}."
        )


def claim_directory(path: Path, kind: str, option: str = named("output")):
    """Lock `path` for a run of `kind` (see `lock_directory`), refuse it if it holds another kind of run, and
    mark it as this kind; returns the lock's handle for `unlock_directory`."""
    check_kind(path, kind, option)
    handle = lock_directory(Path(path), KINDS[kind], option)
    try:
        check_kind(path, kind, option)  # again under the lock: another kind may have claimed it meanwhile
        if not (Path(path) / MARKER).exists():
            write_atomic(Path(path) / MARKER, json.dumps({"kind": kind}) + "\n")
    except BaseException:
        unlock_directory(handle)
        raise
    return handle


def unlock_directory(handle) -> None:
    """Release what `lock_directory` returned (None: nothing to release)."""
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
        self._lock_file = claim_directory(self.path, "eval")
        try:
            self._check_samples_file()
            self._repair()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        unlock_directory(self._lock_file)
        self._lock_file = None

    def __enter__(self) -> RunDir:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_samples_file(self) -> None:
        if self.samples.exists() and not self.samples.is_file():
            raise UserError(
                f"{self.samples} is not a file (a directory?); it must hold the run's samples, so move it out of "
                "the way (or give s1 eval another --output)."
            )

    def _repair(self) -> None:
        """Cut a line torn by a crash, so appending continues on a clean line boundary."""
        if not self.samples.exists():
            return
        data = self.samples.read_bytes()
        if data and not data.endswith(b"\n"):
            try:
                with self.samples.open("rb+") as f:
                    f.truncate(data.rfind(b"\n") + 1)
            except OSError as exc:
                raise write_failure(self.samples, exc) from None

    # -- reading and writing -----------------------------------------------------------------------
    def records(self, parse: Callable[[str], Any] | None = None) -> dict[str, Any]:
        """Finished samples by identity; the last copy wins. Unreadable lines (bad JSON, bad UTF-8,
        records of an older layout) are skipped and counted in `skipped_lines`. `parse` reads a line into
        a typed record with an `identity` (s1.evaluate.records); a line it refuses with a ValueError is
        skipped and counted the same way. Without it, records are dicts."""
        found: dict[str, Any] = {}
        self.skipped_lines = 0
        if not self.samples.exists():
            return found
        self._check_samples_file()
        try:
            data = self.samples.read_bytes()
        except OSError as exc:
            raise UserError(f"Cannot read {self.samples} ({exc.strerror or exc}); check its permissions.") from None
        for raw in data.splitlines():
            if not raw.strip():
                continue
            try:
                if parse is None:
                    record = json.loads(raw.decode("utf-8"))
                    found[record["identity"]] = record
                else:
                    record = parse(raw.decode("utf-8"))
                    found[record.identity] = record
            except (UnicodeDecodeError, ValueError, KeyError, TypeError):
                self.skipped_lines += 1
        return found

    def append(self, record: dict) -> None:
        append_line(self.samples, json.dumps(record, ensure_ascii=False))

    def log_invocation(self, config: dict) -> None:
        """One line per invocation: when, the command line and the whole configuration."""
        append_history(self.path, config=config)

    def write(self, name: str, text: str) -> Path:
        return write_atomic(self.path / name, text)


def append_history(path: Path, **fields) -> None:
    """Append one invocation to `path`/history.jsonl: when, the command line, s1's version and `fields`
    (the configuration); earlier lines are never rewritten (a line not written whole is cut back)."""
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, "s1_version": __version__, **fields}
    append_line(path / HISTORY, json.dumps(entry, ensure_ascii=False, default=str))
