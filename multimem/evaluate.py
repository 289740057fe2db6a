"""Moved to multimem.engine.evaluate; this alias keeps the old import path working for one release."""
import sys

from multimem.engine import evaluate as _moved

sys.modules[__name__] = _moved
