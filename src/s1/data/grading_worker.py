"""The grading worker: an interpreter of its own that grades for one `Grader` (grading.py) over pipes.

It reads one JSON request per line on stdin (`{"call": "grade" | "classes", "args": [...]}`) and writes
one JSON reply per line on stdout, in its main thread, where math-verify's signal-based timeouts work.
It ignores Ctrl-C (the parent handles it and stops the worker) and exits as soon as its parent is gone,
even after SIGKILL, or when stdin closes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="s1-parent-watch").start()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
    from s1.data.grading import _classes, _grade_batch

    calls = {"grade": lambda items: _grade_batch([tuple(i) for i in items]), "classes": _classes}
    out = sys.stdout.buffer
    out.write(b'"ready"\n')
    out.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            args = request["args"]
            result = calls[request["call"]](*args) if request["call"] == "classes" else calls["grade"](args)
            reply = {"result": result}
        except Exception as exc:  # noqa: BLE001 - told to the parent, which raises it there
            reply = {"error": f"{exc.__class__.__name__}: {exc}"[:500]}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
