"""Moved to multimem.store.runs; this alias keeps the old import path working for one release."""
import sys

from multimem.store import runs as _moved

sys.modules[__name__] = _moved
