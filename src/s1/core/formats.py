"""Thinking formats: the strings that open and close a model's thinking, as plain data.

A format is only text, so a user can define one for any model family; `FormatTokens` turns it
into token ids for one tokenizer once, so the decode loops never touch strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from s1.core.errors import UserError, named


@dataclass(frozen=True)
class ThinkingFormat:
    name: str
    think_start: str
    """Appended to the chat template's assistant header to open thinking (skipped if already there)."""
    think_end: str
    """The delimiter that closes thinking and opens the answer."""
    end_triggers: tuple[str, ...]
    """Single tokens that mean the model wants to stop thinking (EOS always counts too)."""
    answer_separator: str
    """Text between `think_end` and the answer prefix when the end is forced."""
    answer_stops: tuple[str, ...] = ()
    """Single tokens that end the answer (EOS always counts too)."""
    answer_label: str = "Answer: "
    """What the training template writes before the attempt when the attempt lacks it."""


S1 = ThinkingFormat(
    name="s1",
    think_start="<|im_start|>think",
    think_end="<|im_start|>answer",
    end_triggers=("<|im_start|>", "<|im_end|>"),
    answer_separator="\n",
    answer_stops=("<|im_end|>",),
)

R1 = ThinkingFormat(
    name="r1",
    think_start="<think>\n",
    think_end="</think>",
    end_triggers=("</think>",),
    answer_separator="\n\n",
    answer_stops=("<|im_end|>",),
)

FORMATS: dict[str, ThinkingFormat] = {f.name: f for f in (S1, R1)}


def get_format(name_or_format: str | ThinkingFormat) -> ThinkingFormat:
    if isinstance(name_or_format, ThinkingFormat):
        return name_or_format
    try:
        return FORMATS[name_or_format]
    except KeyError:
        raise UserError(
            f"Unknown thinking format {name_or_format!r}; choose one of {', '.join(FORMATS)} "
            "or pass a ThinkingFormat from the Python API."
        ) from None


def render_prompt(tokenizer, question: str, fmt: ThinkingFormat, system: str | None = None) -> str:
    """The chat template's rendering of one user turn, with thinking opened after the assistant header."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return render_messages(tokenizer, messages, fmt)


def render_messages(tokenizer, messages: list[dict], fmt: ThinkingFormat) -> str:
    """A whole conversation through the chat template, ending with thinking opened for the reply."""
    return open_thinking(render_chat(tokenizer, messages), fmt)


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = True, **template_kwargs) -> str:
    """A conversation through the chat template up to the reply's assistant header (thinking not opened);
    `template_kwargs` are variables the template reads (the server's `chat_template_kwargs`)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False, **template_kwargs
        )
    return "\n".join(m["content"] for m in messages) + "\n"


def open_thinking(text: str, fmt: ThinkingFormat) -> str:
    """Append the thinking-start delimiter unless the text (e.g. an R1 chat template) already ends with it."""
    if text.rstrip().endswith(fmt.think_start.rstrip()):
        return text.rstrip() + fmt.think_start[len(fmt.think_start.rstrip()) :]
    return text + fmt.think_start


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text` with no special tokens added, exactly as s1 encodes its strings."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def _single_token(tokenizer, text: str) -> int | None:
    ids = encode(tokenizer, text)
    return ids[0] if len(ids) == 1 else None


def eos_ids(tokenizer) -> set[int]:
    ids = set()
    eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(eos)
    return ids


@dataclass
class FormatTokens:
    """A format resolved against one tokenizer: every id a decode loop needs, computed once."""

    fmt: ThinkingFormat
    end_trigger_ids: frozenset[int]
    answer_stop_ids: frozenset[int]
    think_end_ids: tuple[int, ...]
    _tokenizer: object = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def tokenizer(self):
        """The tokenizer these ids are of (a grammar over the answer maps its bytes to them)."""
        return self._tokenizer

    @classmethod
    def build(cls, tokenizer, fmt: ThinkingFormat) -> FormatTokens:
        think_end = encode(tokenizer, fmt.think_end)
        triggers = {t for s in fmt.end_triggers if (t := _single_token(tokenizer, s)) is not None}
        if not triggers:
            raise UserError(
                f"Format {fmt.name!r} needs {fmt.end_triggers[0]!r} to be a single token, but this model's "
                f"tokenizer splits it; use the format that matches the model ({named('format')} s1 for ChatML models)."
            )
        stops = {t for s in fmt.answer_stops if (t := _single_token(tokenizer, s)) is not None}
        eos = eos_ids(tokenizer)
        return cls(
            fmt=fmt,
            end_trigger_ids=frozenset(triggers | eos),
            answer_stop_ids=frozenset(stops | eos),
            think_end_ids=tuple(think_end),
            _tokenizer=tokenizer,
        )

    def ends_with_newline(self, token_id: int) -> bool:
        key = ("nl", token_id)
        if key not in self._cache:
            self._cache[key] = self._tokenizer.decode([token_id]).endswith("\n")
        return self._cache[key]

    def text(self, ids) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def forced_end(self, answer_prefix: str, after_newline: bool) -> tuple[int, ...]:
        """Delimiter plus answer prefix injected at the cap; the newline only if the text lacks one."""
        key = ("end", answer_prefix, after_newline)
        if key not in self._cache:
            nl = "" if after_newline else "\n"
            text = nl + self.fmt.think_end + self.fmt.answer_separator + answer_prefix
            self._cache[key] = tuple(encode(self._tokenizer, text))
        return self._cache[key]

    def natural_end(self, trigger: int) -> tuple[bool, tuple[int, ...]]:
        """How a sampled end-of-thinking token becomes the format's delimiter.

        Returns (keep the sampled token, tokens to force after it). s1's `<|im_start|>` is the first
        token of `<|im_start|>answer`, so it stays and `answer` follows; `<|im_end|>` or EOS are replaced
        by the whole delimiter.
        """
        if self.think_end_ids and trigger == self.think_end_ids[0]:
            return True, self.think_end_ids[1:]
        return False, self.think_end_ids

    def check_extension(self, text: str) -> None:
        """An extension must add thinking: one that encodes to nothing, or holds an end-of-thinking or
        answer-stop token, would end the very thinking it is meant to extend."""
        ids = self.extension(text)
        if not ids:
            raise UserError(f"The extension {text!r} encodes to no tokens; use a word such as 'Wait'.")
        bad = [t for t in ids if t in self.end_trigger_ids or t in self.answer_stop_ids]
        if bad:
            token = self._tokenizer.decode([bad[0]], skip_special_tokens=False)
            raise UserError(
                f"The extension {text!r} contains {token!r}, which ends thinking in the {self.fmt.name!r} format; "
                "use plain text such as 'Wait'."
            )

    def extension(self, text: str) -> tuple[int, ...]:
        key = ("ext", text)
        if key not in self._cache:
            self._cache[key] = tuple(encode(self._tokenizer, text))
        return self._cache[key]
