"""The one exception type whose message is shown to users as is, without a traceback."""


class UserError(ValueError):
    """Bad input from a user: the message says what is wrong and what to do."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's message cut to its first line (and `limit` characters) for a one-sentence error; its type's
    name when the message is empty, so the sentence never breaks on an exception that says nothing."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
