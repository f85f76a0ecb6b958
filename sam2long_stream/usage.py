"""The one exception type for a user's mistake in what they typed or wrote (a flag, a
config or launch file): every command reports it in one line with exit status 2, and
anything that goes wrong at run time with status 1 (docs/operations.md)."""


class UsageError(ValueError):
    """A bad flag value or file: one line, exit status 2."""
