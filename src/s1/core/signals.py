"""Ctrl-C and SIGTERM, remembered: an interrupted run never looks finished.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to be. Where that
is a finalizer (`__del__`), a weakref or ctypes callback, CPython prints "Exception ignored" and goes
on, so a run could finish, write its summary as if complete and exit 0 after a Ctrl-C. So the handlers
here also record the signal: `check()` raises it again before a run writes anything that claims to be
finished, and the command line exits 130 (143 for SIGTERM) whenever one arrived, whatever else happened.
"""

from __future__ import annotations

import signal

_received: int | None = None


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that `finally` blocks stop workers and release locks."""


def install() -> None:
    """Handle SIGINT and SIGTERM as above (the command line does this once, in the main thread)."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def _on_signal(signum, frame) -> None:
    global _received
    if _received is None:
        _received = signum
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def received() -> int | None:
    """The first SIGINT or SIGTERM this process got since `install`, or None."""
    return _received


def check() -> None:
    """Raise the interruption again if one arrived (its first exception may have been swallowed)."""
    if _received == signal.SIGINT:
        raise KeyboardInterrupt()
    if _received == signal.SIGTERM:
        raise Terminated()
