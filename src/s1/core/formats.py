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
    """What means the model wants to stop thinking (EOS always counts too): each one that is a single token of
    the model's tokenizer is matched by id (the fast path); any other is matched as text, like `end_strings`."""
    answer_separator: str
    """Text between `think_end` and the answer prefix when the end is forced."""
    answer_stops: tuple[str, ...] = ()
    """Single tokens that end the answer (EOS always counts too)."""
    answer_label: str = "Answer: "
    """What the training template writes before the attempt when the attempt lacks it."""
    end_strings: tuple[str, ...] = ()
    """Text that ends thinking wherever it appears in the decoded thinking, however the tokens split it
    (several tokens, starting or ending inside one): the step-conditional model's `<|im_start|>0`, plain-text
    delimiters of models without a special token. Matched as tokens arrive (docs/design.md)."""

    @property
    def thinks(self) -> bool:
        """Whether the format opens a thinking block at all (`none`: a plain chat answer)."""
        return bool(self.think_start or self.think_end)


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

NONE = ThinkingFormat(
    name="none",
    think_start="",
    think_end="",
    end_triggers=(),
    answer_separator="",
    answer_stops=("<|im_end|>",),
)
"""No thinking: the chat template's plain answer, no thinking block opened (Table 1's instruct models, the
paper's "without budget forcing" baselines). Every request under it is a plain continuation."""

S1_STEPS = ThinkingFormat(
    name="s1-steps",
    think_start="<|im_start|>think",
    think_end="<|im_start|>answer",
    end_triggers=("<|im_end|>",),
    answer_separator="\n",
    answer_stops=("<|im_end|>",),
    end_strings=("<|im_start|>0", "<|im_start|>answer"),
)
"""The paper's step-conditional model: it marks steps inside its thinking with `<|im_start|>{k} steps left`,
so `<|im_start|>` alone does not end thinking; `<|im_start|>0` (no steps left) and the answer delimiter do."""

FORMATS: dict[str, ThinkingFormat] = {f.name: f for f in (S1, R1, NONE, S1_STEPS)}


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
    if not fmt.think_start:
        return text
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
    end_strings: tuple[str, ...] = ()
    """Ends of thinking matched on decoded text (the format's `end_strings`, and triggers that are not one token)."""
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
        strings = tuple(
            dict.fromkeys(fmt.end_strings + tuple(s for s in fmt.end_triggers if not _single_token(tokenizer, s)))
        )
        if any(not isinstance(s, str) or not s for s in strings):
            raise UserError(f"Format {fmt.name!r} has an empty end of thinking; give each as non-empty text.")
        if fmt.thinks and not triggers and not strings:
            raise UserError(
                f"Format {fmt.name!r} gives no end of thinking; list the text that ends it in end_triggers "
                f"({named('format')} s1 for ChatML models)."
            )
        stops = {t for s in fmt.answer_stops if (t := _single_token(tokenizer, s)) is not None}
        eos = eos_ids(tokenizer)
        return cls(
            fmt=fmt,
            end_trigger_ids=frozenset(triggers | eos),
            answer_stop_ids=frozenset(stops | eos),
            think_end_ids=tuple(think_end),
            end_strings=strings,
            _tokenizer=tokenizer,
        )

    @property
    def _window(self) -> int:
        """Tokens enough to hold any end string: each token decodes to at least one character."""
        return max(len(s) for s in self.end_strings) + 1

    def _token_at(self, window: list[int], char: int) -> int:
        """Index in `window` of the token that holds character `char` of the window's text."""
        for k in range(len(window)):
            if len(self.text(window[: k + 1])) > char:
                return k
        return len(window) - 1

    def string_end(self, output: list[int], since: int, token: int) -> int | None:
        """Whether `token`, appended to `output`, completes an end string in the text written since index
        `since`: the index in `output` of the first token the string touches (len(output) when it lies in
        `token` alone), or None. Only an end completed by this token counts, so each is seen once."""
        if not self.end_strings:
            return None
        start = max(len(output) - self._window, since)
        window = list(output[start:]) + [token]
        before, after = self.text(window[:-1]), self.text(window)
        found = [i for s in self.end_strings if (i := after.find(s, max(len(before) - len(s) + 1, 0))) >= 0]
        if not found:
            return None
        return start + self._token_at(window, min(found))

    def held(self, output: list[int], since: int = 0) -> int:
        """How many of the last tokens may be the start of an end string (not yet shown while streaming, since
        the next token may make them the end of thinking, which is taken back out of the thinking)."""
        if not self.end_strings or len(output) <= since:
            return 0
        start = max(len(output) - self._window, since)
        window = list(output[start:])
        text = self.text(window)
        longest = max(
            (n for s in self.end_strings for n in range(1, min(len(s) - 1, len(text)) + 1) if text.endswith(s[:n])),
            default=0,
        )
        return len(window) - self._token_at(window, len(text) - longest) if longest else 0

    def ends_with_newline(self, token_id: int) -> bool:
        key = ("nl", token_id)
        if key not in self._cache:
            self._cache[key] = self._tokenizer.decode([token_id]).endswith("\n")
        return self._cache[key]

    def ends_line(self, token_id: int, before: int | None = None) -> bool:
        """Whether a token finishes a line or sentence, where a thinking grace ends (`BudgetForcing`): its text
        holds a newline, or ends (trailing spaces aside) with ! ? or . (or their full-width forms) — but not a
        period right after a digit, which numbers a list or starts a decimal ("5." "3.14"). `before` is the
        token before it, read when the token is a bare period."""
        key = ("line", token_id)
        if key not in self._cache:
            text = self._tokenizer.decode([token_id], skip_special_tokens=False)
            bare = text.rstrip(" ")
            if "\n" in text or bare.endswith(("!", "?", "\u3002", "\uff01", "\uff1f")):
                kind = True
            elif bare.endswith("."):
                kind = None if bare == "." else not bare[-2].isdigit()  # None: the token before decides
            else:
                kind = False
            self._cache[key] = kind
        kind = self._cache[key]
        if kind is None:
            return before is None or not self.text([before])[-1:].isdigit()
        return kind

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
        answer-stop token, would end the very thinking it is meant to extend. The empty string is the
        deliberate exception (Table 4's "without string": the end is suppressed, nothing appended)."""
        ids = self.extension(text)
        if not ids and text:
            raise UserError(f"The extension {text!r} encodes to no tokens; use a word such as 'Wait'.")
        bad = [t for t in ids if t in self.end_trigger_ids or t in self.answer_stop_ids]
        if not bad and any(s in text for s in self.end_strings):
            raise UserError(
                f"The extension {text!r} contains {next(s for s in self.end_strings if s in text)!r}, which ends "
                f"thinking in the {self.fmt.name!r} format; use plain text such as 'Wait'."
            )
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
