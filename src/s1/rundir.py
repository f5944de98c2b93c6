"""A run directory: config.json, samples.jsonl (append-only, one line per finished sample), summary.

Each sample is written, flushed and fsynced the moment it is graded, so a run killed at any moment
loses at most the samples in flight; a torn last line is cut off on the next start, and records
are keyed so a resumed run never writes one twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import UserError

SAMPLES = "samples.jsonl"
CONFIG = "config.json"


def record_key(record: dict) -> tuple:
    return (record["benchmark"], str(record["id"]), record["method"], record["setting"], int(record["sample"]))


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create output directory {self.path} ({exc.strerror}); choose another --output.") from None
        self.samples = self.path / SAMPLES
        self._repair()

    def _repair(self) -> None:
        """Cut a line torn by a crash, so appending continues on a clean line boundary."""
        if not self.samples.exists():
            return
        data = self.samples.read_bytes()
        if data and not data.endswith(b"\n"):
            self.samples.write_bytes(data[: data.rfind(b"\n") + 1])

    def check_config(self, config: dict, identity: tuple[str, ...]) -> None:
        """Refuse to mix samples of a different model or decoding into an existing run."""
        path = self.path / CONFIG
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError:
                old = {}
            changed = [k for k in identity if k in old and old.get(k) != config.get(k)]
            if changed:
                raise UserError(
                    f"{self.path} holds a run with a different {', '.join(changed)}; use a new --output directory "
                    "(a run only resumes with the same model and decoding settings)."
                )
        path.write_text(json.dumps(config, indent=2) + "\n")

    def records(self) -> dict[tuple, dict]:
        """Finished samples by key; the last copy wins, unreadable lines are skipped."""
        found: dict[tuple, dict] = {}
        if not self.samples.exists():
            return found
        with self.samples.open(encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    found[record_key(record)] = record
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
        return found

    def append(self, record: dict) -> None:
        with self.samples.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        return target
