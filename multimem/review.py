"""Moved to multimem.store.review_mode; this alias keeps the old import path working for one release."""
import sys

from multimem.store import review_mode as _moved

sys.modules[__name__] = _moved
