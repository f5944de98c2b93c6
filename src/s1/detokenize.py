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
