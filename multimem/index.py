"""Moved to multimem.engine.index; this alias keeps the old import path working for one release."""
import sys

from multimem.engine import index as _moved

sys.modules[__name__] = _moved
