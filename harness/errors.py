"""Errors that mean "the user asked for something we cannot do", reported without a traceback.

Anything else escaping the CLI is a bug: one line and exit 3, its traceback with --debug.
"""


class HarnessError(Exception):
    """A usage or data error with a message meant for the user."""


class UnknownName(HarnessError, KeyError):
    """An unknown task, suite, backend, trainer, profile or sample id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UsageError(HarnessError, ValueError):
    """A bad option value or input file."""
