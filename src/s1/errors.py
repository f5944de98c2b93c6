"""The one exception type whose message is shown to users as is, without a traceback."""


class UserError(ValueError):
    """Bad input from a user: the message says what is wrong and what to do."""
