"""Review mode: `MULTIMEM_READONLY=1` serves the dashboard to reviewers with every write switched off.

Pages read `readonly()` to disable the controls that start jobs, upload or write; the library's write functions
(jobs, curation lists, removal from a list) call `refuse_if_readonly(what)` first, so no path through the app can
write while the flag is set, whatever a page draws.
"""
from __future__ import annotations

import os

from multimem.errors import RunError

ENV = "MULTIMEM_READONLY"
NOTE = ("Review mode (MULTIMEM_READONLY is set): every view and link works; starting jobs, uploads, tagging and "
        "lists are switched off.")


class ReadOnlyError(RunError):
    pass


def readonly() -> bool:
    """True when $MULTIMEM_READONLY is set to anything but empty, 0, false, no or off (read at every call)."""
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def refuse_if_readonly(what: str) -> None:
    if readonly():
        raise ReadOnlyError(f"cannot {what}: this dashboard is in review mode ({ENV} is set); nothing is written")
