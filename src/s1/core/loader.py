"""A user's Python function named as `package.module:function`: a curate role's `python` engine (a
programmatic teacher or solver) and a reward function for search both load through here, so both
fail the same way, in one sentence, whatever importing the user's module raised."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from s1.core.errors import UserError, first_line


def load_function(target: str, what: str) -> Callable:
    """The callable `target` names; `what` says what it is for in the error ("the python role")."""
    what_ = what[:1].upper() + what[1:]
    module_name, colon, attribute = target.partition(":")
    if not (colon and module_name and attribute):
        raise UserError(f"{what_} {target!r} is not module:function; name it as package.module:function.")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # noqa: BLE001 - whatever importing the user's module raises is one sentence
        raise UserError(
            f"Cannot load {what} {target!r} ({first_line(exc, 200)}); name an importable module:function."
        ) from None
    if not callable(function):
        raise UserError(
            f"{what_} {target!r} is not a function (a {type(function).__name__}, not callable); "
            "name one as module:function."
        )
    return function
