"""The one exception type for errors a user can cause.

Every message says what went wrong and what to do about it. The CLI prints it as one line on
stderr and exits with status 2; library callers can catch it.
"""

from __future__ import annotations


class InstructRecError(Exception):
    """A user-caused error (bad file, missing column, unknown id, model not found, ...)."""


class DataError(InstructRecError):
    """Input data that cannot be read or is inconsistent."""


class ModelError(InstructRecError):
    """A model that cannot be found, loaded or used as asked."""
