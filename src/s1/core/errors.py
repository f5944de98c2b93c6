"""The one exception type whose message is shown to users as is, without a traceback.

A library error about a setting names the setting, not a flag: the same engine is reached from the
command line (`--base-url`), from `s1 serve` (`--upstream`, or a request's `max_thinking_tokens`) and
from a curation config (`roles.teacher.base_urls`), so each front end words the setting in its own terms
(`UserError.worded`). A sentence marks where it names a setting with `named(...)`; a setting the sentence
names in its owner's own words (a dataclass's validation: "max_thinking_tokens must be ...") is passed
as `setting=`, and a front end whose name for it differs says which one it means in front.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_MARK = "\ue000{}\ue001"
_MARKED = re.compile("\ue000(\\w+)\ue001")
_UNSET = object()


def named(setting: str) -> str:
    """A setting's place in an error sentence: each front end writes its own name for it there."""
    return _MARK.format(setting)


class UserError(ValueError):
    """Bad input from a user: the message says what is wrong and what to do.

    `settings` are the settings (by their declared names) the sentence is about, `value` the bad value
    where one is known. `str()` names each setting by its own name, as the Python API and the server's
    request fields do."""

    def __init__(self, message: str, setting: str | tuple[str, ...] = (), value=_UNSET):
        self.template = message
        given = (setting,) if isinstance(setting, str) else tuple(setting)
        self.settings = tuple(dict.fromkeys([*_MARKED.findall(message), *given]))
        self.value = None if value is _UNSET else value
        super().__init__(self.worded())

    def worded(self, name: Callable[[str], str] | None = None, lead: str = "{}: ") -> str:
        """The sentence with each setting called `name(setting)`. A setting the sentence does not mark
        (it is named in its owner's words) is put in front, through `lead`, where the front end's name
        differs from the setting's own."""
        name = name or (lambda s: s)
        text = _MARKED.sub(lambda m: name(m[1]), self.template)
        loose = [s for s in self.settings if named(s) not in self.template and name(s) != s]
        return lead.format(name(loose[0])) + text if loose else text


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's message cut to its first line (and `limit` characters) for a one-sentence error; its type's
    name when the message is empty, so the sentence never breaks on an exception that says nothing."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
