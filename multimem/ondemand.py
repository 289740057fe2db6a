"""Moved to multimem.engine.pair_score; this alias keeps the old import path working for one release."""
import sys

from multimem.engine import pair_score as _moved

sys.modules[__name__] = _moved
