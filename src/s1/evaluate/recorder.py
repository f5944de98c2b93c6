"""Grading and recording: every finished sample or search is graded and appended to the run directory the
moment it is done, on a background thread, so decoding never waits on grading (its math runs in the
grader's worker process).

A sample is graded on its answer text. A search record grades every trajectory, groups the answers by
equivalence and lets its method pick one (`methods.SearchMethod.pick`): a parallel record of N
trajectories also answers for n = 1, 2, 4 ... from its first n, so one run draws the whole curve.
Records graded by another version of the grader are graded again (never generated again) when the
directory is opened.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import replace

from s1.core.rundir import RunDir
from s1.data.grading import GRADER_VERSION, Grader
from s1.evaluate.methods import METHODS, Setting
from s1.evaluate.records import Point, Record, SampleRecord, SearchRecord


def grade(record: Record, grader: Grader) -> Record:
    """The record with its verdict."""
    if isinstance(record, SearchRecord):
        return choose_answer(record, grader)
    return record.graded(grader.grade(record.kind, record.gold, record.answer), GRADER_VERSION)


def choose_answer(record: SearchRecord, grader: Grader) -> SearchRecord:
    """Grade a search record's trajectories and choose its answer, per n for parallel methods."""
    method = METHODS[record.method]
    trajectories = record.trajectories
    grades = grader.grade_many([(record.kind, record.gold, t.answer) for t in trajectories])
    trajectories = [replace(t, extracted=g.extracted, correct=g.correct) for t, g in zip(trajectories, grades)]
    classes = grader.classes(record.kind, [t.extracted for t in trajectories]) if trajectories else []
    rewards = [t.reward for t in trajectories]
    setting = Setting.from_spec(record.setting_spec)
    points = {}
    for n in method.sizes(len(trajectories)):
        first = trajectories[:n]
        choice = method.pick(setting, classes[:n], rewards[:n])
        if method.parallel:  # a parallel point costs its first n trajectories (and the prompt, once)
            generated = sum(t.generated_tokens for t in first)
            prefill = record.root_prefill + sum(t.prefill_tokens for t in first)
            scored = sum(t.reward_tokens for t in first)
        else:  # a tree's one point costs the whole tree
            generated, prefill, scored = record.generated_tokens, record.prefill_tokens, record.reward_tokens
        points[n] = Point(
            choice=choice,
            correct=choice is not None and bool(trajectories[choice].correct),
            generated_tokens=generated,
            prefill_tokens=prefill,
            # majority reads no reward, even when it shares its trajectories with a method that does
            reward_tokens=scored if method.needs_reward else 0,
        )
    final = points.get(len(trajectories)) if trajectories else None
    chosen = trajectories[final.choice] if final is not None and final.choice is not None else None
    return replace(
        record,
        trajectories=trajectories,
        points=points,
        correct=final.correct if final is not None else False,
        extracted=chosen.extracted if chosen else None,
        answer=chosen.answer if chosen else "",
        reason="chosen by " + record.method,
        grader=GRADER_VERSION,
    )


def regrade(run: RunDir, grader: Grader, records: dict[str, Record]) -> dict[str, Record]:
    """Records graded by another version of the grader are graded again (cheap next to generating them);
    the new grade is appended, so the file keeps both. Records written before the graded text was kept
    (no `answer`) keep their grade."""
    stale = [
        r
        for r in records.values()
        if r.grader != GRADER_VERSION and r.answer is not None and (isinstance(r, SampleRecord) or r.method in METHODS)
    ]
    out = dict(records)
    for record in [r for r in stale if isinstance(r, SearchRecord)]:
        out[record.identity] = choose_answer(record, grader)
        run.append(out[record.identity].to_json())
    samples = [r for r in stale if isinstance(r, SampleRecord)]
    if samples:
        for record, verdict in zip(samples, grader.grade_many([(r.kind, r.gold, r.answer) for r in samples])):
            out[record.identity] = record.graded(verdict, GRADER_VERSION)
            run.append(out[record.identity].to_json())
    return out


class Recorder:
    """Grades finished records on a background thread and appends them, so decoding never waits on grading.
    Used as a context manager: leaving it normally waits for every record to be written (and raises what
    grading raised); leaving it by an exception drops what is not graded yet (those samples are in flight)."""

    def __init__(self, run: RunDir, grader: Grader, on_recorded):
        self.run, self.grader, self.on_recorded = run, grader, on_recorded
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.dropping = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="s1-grading")
        self.thread.start()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind, *_) -> None:
        self.close(drain=kind is None)

    def put(self, record: Record) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(record)

    def _loop(self) -> None:
        while (record := self.queue.get()) is not None:
            if self.error is not None or self.dropping:
                continue
            try:
                record = grade(record, self.grader)
                if self.dropping:  # interrupted while it was graded: in flight, so not recorded
                    continue
                self.run.append(record.to_json())
                self.on_recorded(record)
            except BaseException as exc:  # handed to the main thread at the next put or at close
                self.error = exc

    def close(self, drain: bool = True) -> None:
        """drain=False (an interrupted run): drop what is not graded yet; those samples are in flight."""
        self.dropping = not drain
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and drain:
            raise self.error
