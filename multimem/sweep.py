"""Moved to multimem.mitigation.sweep; this alias keeps the old import path working for one release."""
import sys

from multimem.mitigation import sweep as _moved

sys.modules[__name__] = _moved
