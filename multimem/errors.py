"""The project's errors: bad input named with its file, row or parameter and what to do (no torch here)."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input: the message names the file, row or parameter and says what to do."""


class RunError(DataError):
    """A run folder that cannot be used as asked (missing, locked, made from other data, other settings)."""


class MitigationError(RunError):
    """A mitigation that cannot be derived as asked (unknown strategy, bad setting, unsuitable parent run)."""
