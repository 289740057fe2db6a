"""Moved to multimem.engine.train; this alias keeps the old import path working for one release."""
import sys

from multimem.engine import train as _moved

sys.modules[__name__] = _moved
