"""Moved to multimem.data.splits; this alias keeps the old import path working for one release."""
import sys

from multimem.data import splits as _moved

sys.modules[__name__] = _moved
