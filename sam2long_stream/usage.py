"""The one exception type for a user's mistake in what they typed or wrote (a flag, a
config or launch file): every command reports it in one line with exit status 2, and
anything that goes wrong at run time with status 1 (docs/operations.md). Also the
argparse that reports a bad flag that way, for every command line of the package."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from sam2long_stream.limits import MAX_ERROR_CHARS, quote, shorten

PROG = "sam2long-stream"


class UsageError(ValueError):
    """A bad flag value or file: one line, exit status 2."""


class UsageParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one short line instead of usage + error,
    quoting a bad value shortened (argparse quotes it whole)."""

    def error(self, message: str) -> NoReturn:
        line = shorten(" ".join(message.splitlines()), MAX_ERROR_CHARS)  # argv may hold \n
        sys.stderr.write(f"{PROG}: error: {line} (see {self.prog} --help)\n")
        sys.exit(2)

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as exc:
            raise _shortened(action, exc, arg_string) from None

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            raise _shortened(action, exc, value) from None


class RaisingUsageParser(UsageParser):
    """For a command whose `main()` returns its exit status rather than exiting (eval,
    train: callable as functions): a usage mistake raises `UsageError`, in the same
    short line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(shorten(" ".join(message.splitlines()), MAX_ERROR_CHARS))


def _shortened(
    action: argparse.Action, exc: argparse.ArgumentError, value: Any
) -> argparse.ArgumentError:
    return argparse.ArgumentError(action, exc.message.replace(repr(value), quote(value)))
