"""Moved to multimem.engine.score; this alias keeps the old import path working for one release."""
import sys

from multimem.engine import score as _moved

sys.modules[__name__] = _moved
