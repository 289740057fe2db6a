"""Moved to multimem.store.staging; this alias keeps the old import path working for one release."""
import sys

from multimem.store import staging as _moved

sys.modules[__name__] = _moved
