"""Every file s1 writes goes through here: whole or not at all, and a failure is one sentence.

Why: a full disk, a read-only directory or a file-size limit must never leave a truncated summary, a
0-byte plot or half a record behind, nor a traceback. A whole file is written to a temporary file in
the same directory, flushed to disk and renamed over the target (a rename within one file system is
atomic), so a reader sees the old file or the new one. An appended line is cut off again if it could
not be written whole. A failed write raises `UserError` saying which file, why, and that what was
finished is safe (the commands resume), so every front end reports it the same way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from s1.core.errors import UserError, first_line

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def write_failure(path: str | Path, exc: BaseException) -> UserError:
    """The one sentence for a write that failed: which file, why, and what to do. Libraries that wrap the
    system's error in their own (sqlite, safetensors) are read by their words."""
    code, text = getattr(exc, "errno", None), str(exc)
    if code in _FULL or any(w in text for w in ("No space left", "StorageFull", "disk is full", "quota")):
        why, fix = "the disk is full", "free some space"
    elif code in _READ_ONLY or any(w in text for w in ("readonly", "Read-only", "read-only", "Permission denied")):
        why, fix = "the location is not writable", "make it writable or choose another output"
    elif code in (errno.ENOENT, errno.ENOTDIR) and Path(path).parent.is_dir():  # /proc, /sys: no new files
        why, fix = "its folder does not take new files", "choose another path"
    elif code in (errno.ENOENT, errno.ENOTDIR):
        why, fix = "its folder does not exist", "create the folder or choose another path"
    elif code == errno.EISDIR:
        why, fix = "a directory is in the way", "move it away or choose another path"
    elif code == errno.EFBIG or "File too large" in text:
        why, fix = "the file size limit (ulimit -f) was reached", "raise the limit"
    elif getattr(exc, "sqlite_errorname", "").startswith("SQLITE_IOERR") or text == "disk I/O error":
        # SQLite says only "disk I/O error" for a write the system refused, whatever the reason
        why = "the system refused a write (a full disk, the file size limit of ulimit -f, or a failing disk)"
        fix = "free some space or raise the limit"
    else:
        why, fix = getattr(exc, "strerror", None) or first_line(exc, 200), "fix the cause"
    return UserError(
        f"Cannot write {path}: {why}; nothing finished before it is lost, so {fix} and run the same command again."
    )


@contextlib.contextmanager
def replacing(target: str | Path) -> Iterator[Path]:
    """A temporary path beside `target` for a writer that takes a path (a plot, a model directory's file);
    on success it is synced and renamed over `target`, on failure removed and the failure said in one
    sentence. The temporary name keeps the target's suffix, so writers that infer a format from it still can."""
    target = Path(target)
    temporary = _temporary(target)
    try:
        yield temporary
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if is_write_error(exc):
            raise write_failure(target, exc) from None
        raise
    _sync_directory(target.parent)


@contextlib.contextmanager
def replacing_directory(target: str | Path) -> Iterator[Path]:
    """`replacing` for a directory (a saved model): filled beside `target`, then swapped in for it, so `target`
    is the old directory or the whole new one, never a half-written one."""
    target = Path(target)
    partial = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
    try:
        partial.mkdir(parents=True)
        yield partial
        for path in partial.rglob("*"):
            if path.is_file():
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.old"
            os.replace(target, old)
        os.replace(partial, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if is_write_error(exc):
            raise write_failure(target, exc) from None
        raise
    _sync_directory(target.parent)


def write_atomic(target: str | Path, data: str | bytes) -> Path:
    """Write a whole file (text as UTF-8) through a temporary file and a rename; returns the target."""
    target = Path(target)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with replacing(target) as temporary:
        temporary.write_bytes(payload)
    return target


def save_figure(fig, target, format: str | None = None, **options) -> None:
    """Save a matplotlib figure to a path, whole or not at all, in the format its extension names (PNG when it
    has none); an extension matplotlib cannot write is one sentence listing those it can. A file object
    (an in-memory SVG) is written directly."""
    if not isinstance(target, (str, Path)):
        fig.savefig(target, format=format, **options)
        return
    target = Path(target)
    kinds = fig.canvas.get_supported_filetypes()
    format = format or target.suffix.lstrip(".").lower() or "png"
    if format not in kinds:
        raise UserError(
            f"Cannot draw {target}: matplotlib does not write .{format} files; give it one of the extensions "
            + ", ".join(f".{k}" for k in sorted(kinds))
            + "."
        )
    with replacing(target) as temporary:
        fig.savefig(temporary, format=format, **options)


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a newline is added) and sync it; if it cannot be written whole, the file is cut
    back to where it was, so it never ends in half a line."""
    path = Path(path)
    data = (line + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise write_failure(path, exc) from None
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise write_failure(path, exc) from None
    finally:
        os.close(fd)


def _temporary(target: Path) -> Path:
    """A new empty file beside `target`, created with the mode a plain open would give (umask applies)."""
    for _ in range(100):
        path = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{target.suffix}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_failure(target, exc) from None
    raise write_failure(target, FileExistsError(errno.EEXIST, "no free temporary name"))


def is_write_error(exc: BaseException) -> bool:
    """A failed write, also where a library wraps it in its own exception (torch's `file write failed`,
    safetensors' `StorageFull`)."""
    text = str(exc)
    return isinstance(exc, OSError) or any(
        words in text
        for words in ("write failed", "No space left", "StorageFull", "File too large", "Read-only file", "quota")
    )


def _sync_directory(path: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows opening a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
