"""Running an engine behind concurrent requests: each request gets a sink of events.

`BatchScheduler` drives an engine's running batch (`engines.batching.BatchLoop`, over the transformers
or the llama.cpp runtime) on one thread: requests join it between two steps (continuous batching) and a
cancelled request leaves it at once. `SerialScheduler` runs any engine's `generate` one request per
worker (remote servers, which do their own batching). A request's sink receives `Delta`s as text
arrives, then one `Done` or one `Failed`.

Admission is fair across HTTP requests: a request's sequences are submitted under one `group` (the HTTP request
they belong to), and a free slot goes to the groups in turn (round-robin), so a request of many sequences takes
its share of the batch and a small request queued behind it joins at the next free slot instead of waiting for
all of them (docs/design.md, "Serving").

A request is submitted with its `Stream` options (stop strings and how text is decoded); a request's
own failure (a token id outside the vocabulary, a sampling error) ends that request with `Failed` and
the batch goes on; a failed forward pass, which all rows share, ends every running request.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from s1.core.detokenize import ThinkingSplitter
from s1.engines.base import Completion, Request, to_completion


@dataclass(frozen=True)
class Stream:
    """How a request's text is cut and decoded: OpenAI's `stop` strings, vLLM's `include_stop_str_in_output`
    and `skip_special_tokens` (the latter for plain continuations)."""

    stop: tuple[str, ...] = ()
    include_stop: bool = False
    skip_special_tokens: bool = False

    def splitter(self, engine) -> ThinkingSplitter:
        return ThinkingSplitter(
            engine.tokenizer, engine.format_tokens, self.stop, self.include_stop, self.skip_special_tokens
        )


@dataclass(frozen=True)
class Delta:
    """New text of one request since its last event: thinking, answer, and the raw continuation."""

    reasoning: str
    content: str
    raw: str


@dataclass(frozen=True)
class Done:
    """The request finished: its completion (cut at a matched stop string) and the raw continuation's text."""

    completion: Completion
    raw_text: str


@dataclass(frozen=True)
class Failed:
    """The request ended without a completion; `message` is the sentence the client gets."""

    message: str


Event = Delta | Done | Failed
Sink = Callable[[Event], None]


@dataclass(frozen=True)
class _Add:
    rid: int
    request: Request
    sink: Sink
    stream: Stream
    group: Hashable = None


class Turns:
    """Sequences waiting for a slot, queued by group (an HTTP request) and taken from the groups in turn: each
    `take` serves the group after the last one served, so no group waits for another's many sequences."""

    def __init__(self):
        self.groups: OrderedDict[Hashable, deque] = OrderedDict()
        self.count = 0
        """Sequences waiting, kept as a number: /metrics reads it from another thread than the one that queues."""

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return bool(self.groups)  # a group leaves once empty

    def put(self, group: Hashable, item) -> None:
        self.groups.setdefault(group, deque()).append(item)
        self.count += 1

    def take(self):
        group, waiting = next(iter(self.groups.items()))
        item = waiting.popleft()
        del self.groups[group]
        if waiting:
            self.groups[group] = waiting  # to the back of the line
        self.count -= 1
        return item

    def remove(self, match: Callable[[object], bool]) -> bool:
        for group, waiting in self.groups.items():
            for item in waiting:
                if match(item):
                    waiting.remove(item)
                    if not waiting:
                        del self.groups[group]
                    self.count -= 1
                    return True
        return False


@dataclass(frozen=True)
class _Cancel:
    rid: int


@dataclass(frozen=True)
class _Stop:
    pass


def finished(completion: Completion, splitter: ThinkingSplitter) -> Done:
    """The done event: the completion cut at a matched stop string, and the raw text of the continuation."""
    if splitter.matched is not None:
        completion = replace(completion, answer=splitter.answer, finish_reason="stop", stop_reason=splitter.matched)
    return Done(completion, splitter.raw_text)


def failed(exc: Exception) -> Failed:
    return Failed(f"generation failed: {exc.__class__.__name__}: {exc}")


def delta(splitter: ThinkingSplitter, state) -> Delta:
    return Delta(*splitter.update(state))


class _Cancelled(Exception):
    pass


class BatchScheduler:
    def __init__(self, engine, max_batch: int = 16):
        self.engine = engine
        self.loop = engine.loop(max_batch, on_token=self._on_token)
        self.commands: queue.Queue[_Add | _Cancel | _Stop] = queue.Queue()
        self.sinks: dict[int, tuple[Sink, ThinkingSplitter]] = {}
        self.ids = itertools.count()
        self.turns = Turns()
        """Sequences not yet handed to the loop: it gets one only when it has a free slot for it."""
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="s1-decode-loop", daemon=True)
        self.thread.start()

    def submit(self, request: Request, sink: Sink, stream: Stream = Stream(), group: Hashable = None) -> int:
        """Queue `request`; sequences of one `group` (an HTTP request's choices) share its turns (see `Turns`)."""
        rid = next(self.ids)
        self.commands.put(_Add(rid, request, sink, stream, group))
        return rid

    @property
    def load(self) -> tuple[int, int]:
        """(sequences decoding, requests waiting to join), for /metrics."""
        return len(self.loop.rows), len(self.loop.waiting) + len(self.turns) + self.commands.qsize()

    def cancel(self, rid: int) -> None:
        self.commands.put(_Cancel(rid))

    def close(self) -> None:
        self.stopped = True
        self.commands.put(_Stop())
        self.thread.join(timeout=10)

    def _apply(self, command: _Add | _Cancel) -> None:
        if isinstance(command, _Add):
            self.sinks[command.rid] = (command.sink, command.stream.splitter(self.engine))
            self.turns.put(command.rid if command.group is None else command.group, command)
        elif self.sinks.pop(command.rid, None) is not None:
            if not self.turns.remove(lambda add: add.rid == command.rid):
                self.loop.cancel(command.rid)

    def _admit(self) -> None:
        """Hand the loop as many waiting sequences as it has free slots, the groups taking turns."""
        while self.turns and len(self.loop.free) > len(self.loop.waiting):
            add = self.turns.take()
            self.loop.add(add.rid, add.request)

    def _run(self) -> None:
        while not self.stopped:
            try:
                # Block only while idle; otherwise take what arrived and step at once.
                command = self.commands.get() if not (self.loop.busy or self.turns) else self.commands.get_nowait()
                if isinstance(command, _Stop):
                    return
                self._apply(command)
                continue
            except queue.Empty:
                pass
            self._admit()
            try:
                done = self.loop.step()
            except Exception as exc:  # the shared forward pass failed: nothing can be kept, the server goes on
                for sink, _ in self.sinks.values():
                    sink(failed(exc))
                self.sinks.clear()
                self.turns = Turns()
                self.loop = self.engine.loop(self.loop.max_batch, on_token=self._on_token)
                continue
            for rid, exc in self.loop.failed:
                entry = self.sinks.pop(rid, None)
                if entry is not None:
                    entry[0](failed(exc))
            self.loop.failed.clear()
            for rid, request, state, row in done:
                entry = self.sinks.pop(rid, None)
                if entry is not None:
                    completion = to_completion(
                        request,
                        state,
                        self.engine.tokenizer,
                        self.engine.fmt,
                        row.logprobs,
                        row.prompt_logprobs,
                        prefill_tokens=row.prefilled,
                    )
                    entry[0](finished(completion, entry[1]))

    def _on_token(self, rid: int, token: int, state) -> None:
        entry = self.sinks.get(rid)
        if entry is not None:
            sink, splitter = entry
            sink(delta(splitter, state))


class SerialScheduler:
    """One request per worker thread; `workers` bounds how many run at once. A worker that is free takes the next
    sequence from the groups in turn (`Turns`), as `BatchScheduler` fills a free slot."""

    def __init__(self, engine, workers: int = 1):
        self.engine = engine
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s1-worker")
        self.cancelled: set[int] = set()
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.turns = Turns()
        self.running = self.waiting = 0

    def submit(self, request: Request, sink: Sink, stream: Stream = Stream(), group: Hashable = None) -> int:
        rid = next(self.ids)
        with self.lock:
            self.waiting += 1
            self.turns.put(rid if group is None else group, (rid, request, sink, stream))
        self.pool.submit(self._next)  # one task per sequence: a free worker runs whichever sequence's turn it is
        return rid

    def _next(self) -> None:
        with self.lock:
            rid, request, sink, stream = self.turns.take()
        self._work(rid, request, sink, stream)

    @property
    def load(self) -> tuple[int, int]:
        with self.lock:
            return self.running, self.waiting

    def cancel(self, rid: int) -> None:
        with self.lock:
            self.cancelled.add(rid)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _work(self, rid: int, request: Request, sink: Sink, stream: Stream) -> None:
        splitter = stream.splitter(self.engine)
        with self.lock:
            self.waiting -= 1
            self.running += 1

        def on_token(_, token, state):
            if rid in self.cancelled:
                raise _Cancelled
            sink(delta(splitter, state))

        try:
            if rid in self.cancelled:
                return
            [completion] = self.engine.generate([request], batch_size=1, on_token=on_token)
            sink(finished(completion, splitter))
        except _Cancelled:
            pass
        except Exception as exc:
            sink(failed(exc))
        finally:
            with self.lock:
                self.cancelled.discard(rid)
                self.running -= 1
