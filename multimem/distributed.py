"""Moved to multimem.engine.distributed; this alias keeps the old import path working for one release."""
import sys

from multimem.engine import distributed as _moved

sys.modules[__name__] = _moved
