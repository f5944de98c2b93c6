"""Text read from a user's file is valid Unicode, or it is refused where it was read.

JSON (`"\\ud800"`) and YAML (`"\\ud800"` in double quotes) can both spell half of a UTF-16 surrogate pair on its
own. Python keeps such a string, but it is not a character: a tokenizer, the curation store, a JSON reply or
an output file fails on it later, far from the file that held it, with a traceback. So every reader of user
files (data, task files, configs, recipes) checks what it parsed and names the place in one sentence.
"""

from __future__ import annotations

import re

from s1.core.errors import UserError

ESCAPED_SURROGATE = re.compile(r"\\[uU]0{0,4}[dD][89a-fA-F]")
"""An escape that may spell a surrogate (JSON's \\uD800, YAML's \\uD800 or \\U0000D800): a cheap test of the raw text
before walking what was parsed."""


def _joined(text: str) -> str | None:
    """`text` with surrogate pairs joined into their characters (YAML leaves "\\ud83d\\ude00" as two halves),
    or None when a half stands alone."""
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    try:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        return None


def refuse_lone_surrogates(value, where: str, field: str | None = None):
    """`value` with every string's surrogate pairs joined (keys included); a string holding a lone surrogate
    raises `UserError` naming `where` ("Line 3 of data.jsonl", which starts the sentence) and the field (`a.b[0]`)."""
    if isinstance(value, str):
        joined = _joined(value)
        if joined is None:
            inside = f" in field {field!r}" if field is not None else ""
            raise UserError(
                f"{where} holds a lone UTF-16 surrogate escape (such as \\ud800){inside}, which is not valid Unicode "
                "text; write the character itself or its full surrogate pair."
            )
        return joined
    if isinstance(value, dict):
        return {
            refuse_lone_surrogates(key, where, field): refuse_lone_surrogates(
                item, where, str(key) if field is None else f"{field}.{key}"
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            refuse_lone_surrogates(item, where, f"{field}[{index}]" if field is not None else f"[{index}]")
            for index, item in enumerate(value)
        ]
    return value
