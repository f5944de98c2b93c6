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
    """Streams one sequence as three texts: reasoning (thinking), content (the answer) and raw (all of it).

    Content is the text after the end-of-thinking delimiter, without the separator's leading newlines
    and without the final stop token, exactly as `to_completion` splits the finished sequence, so the
    streamed pieces add up to the non-streamed response.
    """

    def __init__(self, tokenizer, format_tokens):
        self.tokenizer = tokenizer
        self.think_end = format_tokens.fmt.think_end
        self.stop_ids = format_tokens.answer_stop_ids
        self.reasoning = None
        self.raw = None
        self.content_sent = 0
        self.answering = False

    def update(self, state) -> tuple[str, str, str]:
        """(reasoning delta, content delta, raw delta) after the state's newest token."""
        ids = state.output
        if self.reasoning is None:
            self.reasoning = IncrementalDecoder(self.tokenizer, ids)
            self.raw = IncrementalDecoder(self.tokenizer, ids)
        end = len(ids) - 1 if (state.done and ids and ids[-1] in self.stop_ids and state.finish_reason == "stop") else len(ids)
        raw = self.raw.delta(end)
        if state.thinking_end is None:
            return self.reasoning.delta(), "", raw
        reasoning = "" if self.answering else self.reasoning.delta(state.thinking_end)
        self.answering = True
        tail = self.tokenizer.decode(ids[state.thinking_end : end], skip_special_tokens=False)
        _, found, answer = tail.partition(self.think_end)
        answer = answer.lstrip("\n") if found else ""
        if answer.endswith("\ufffd") and not state.done:
            return reasoning, "", raw
        content = answer[self.content_sent :]
        self.content_sent = len(answer)
        return reasoning, content, raw
