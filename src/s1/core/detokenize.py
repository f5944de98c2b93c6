"""Incremental detokenization: text deltas as tokens arrive, never splitting a multi-byte character."""

from __future__ import annotations


class IncrementalDecoder:
    """Decodes only a short window per token (as vLLM does), so streaming stays linear in length."""

    def __init__(self, tokenizer, ids: list[int], start: int = 0):
        self.tokenizer = tokenizer
        self.ids = ids
        self.prefix_offset = start
        self.read_offset = start

    def delta(self, upto: int | None = None) -> str:
        """New text for ids[:upto] (all ids by default) since the last call."""
        end = len(self.ids) if upto is None else upto
        if end <= self.read_offset:
            return ""
        before = self.tokenizer.decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=False)
        after = self.tokenizer.decode(self.ids[self.prefix_offset : end], skip_special_tokens=False)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, end
        return after[len(before) :]


class ThinkingSplitter:
    """Streams one sequence as three texts: reasoning (thinking), content (the answer) and raw (all of it),
    and ends it at the first of the request's stop strings (OpenAI's `stop`, applied to the answer).

    Content is the text after the end-of-thinking delimiter, without the separator's leading newlines
    and without the final stop token, exactly as `to_completion` splits the finished sequence, so the
    streamed pieces add up to the non-streamed response. With stop strings, the last few characters
    that could be the start of one are held back until the next token decides.
    """

    def __init__(
        self,
        tokenizer,
        format_tokens,
        stops: tuple[str, ...] = (),
        include_stop: bool = False,
        skip_special_tokens: bool = False,
    ):
        self.tokenizer = tokenizer
        self.think_end = format_tokens.fmt.think_end
        self.stops = tuple(s for s in stops if s)
        self.include_stop = include_stop
        self.skip_special = skip_special_tokens
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.reasoning = None
        self.reasoning_sent = False
        self.raw_text = ""
        self.raw_sent = 0
        self.answer = ""
        self.content_sent = 0
        self.matched: str | None = None
        """The stop string that ended the sequence, once one did."""

    def update(self, state) -> tuple[str, str, str]:
        """(reasoning delta, content delta, raw delta) after the state's newest token."""
        ids = state.output
        if self.reasoning is None:
            self.reasoning = IncrementalDecoder(self.tokenizer, ids)
            self.raw = IncrementalDecoder(self.tokenizer, ids)
        if self.matched is not None:
            return "", "", ""
        stopped = state.done and ids and ids[-1] in state.answer_stop_ids and state.finish_reason == "stop"
        end = len(ids) - 1 if stopped else len(ids)
        if state.plain:
            self.answer = self.tokenizer.decode(ids[:end], skip_special_tokens=self.skip_special)
            self.raw_text = self.answer
            reasoning = ""
        else:
            held = state.unsettled  # the start of an end string, which the next token may take back
            self.raw_text += self.raw.delta(end - held)
            if state.thinking_end is None:
                return self.reasoning.delta(len(ids) - held), "", self._raw_delta(state, "")
            reasoning = "" if self.reasoning_sent else self.reasoning.delta(state.thinking_end)
            self.reasoning_sent = True
            tail = self.tokenizer.decode(ids[state.thinking_end : end], skip_special_tokens=False)
            _, found, answer = tail.partition(self.think_end)
            self.answer = answer.lstrip("\n") if found else ""
        if self.answer.endswith("\ufffd") and not state.done:
            return reasoning, "", ""
        self._stop_at_strings(state)
        content = self._sendable(self.answer, state)[self.content_sent :]
        self.content_sent += len(content)
        return reasoning, content, self._raw_delta(state, self.answer)

    def _stop_at_strings(self, state) -> None:
        if not self.stops or state.thinking_end is None:
            return
        hits = [(i, s) for s in self.stops if (i := self.answer.find(s)) >= 0]
        if not hits:
            return
        at, stop = min(hits)
        cut = at + (len(stop) if self.include_stop else 0)
        self.raw_text = self.raw_text[: len(self.raw_text) - (len(self.answer) - cut)]
        self.answer = self.answer[:cut]
        self.matched = stop
        state.finish("stop")

    def _sendable(self, text: str, state) -> str:
        if not self.stops or state.done or self.matched is not None:
            return text
        return text[: max(len(text) - self.hold, 0)]

    def _raw_delta(self, state, answer: str) -> str:
        held = len(answer) - len(self._sendable(answer, state))
        upto = max(len(self.raw_text) - held, self.raw_sent)
        delta = self.raw_text[self.raw_sent : upto]
        self.raw_sent = upto
        return delta
