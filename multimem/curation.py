"""Moved to multimem.store.lists; this alias keeps the old import path working for one release."""
import sys

from multimem.store import lists as _moved

sys.modules[__name__] = _moved
