"""Moved to multimem.data.dataset; this alias keeps the old import path working for one release."""
import sys

from multimem.data import dataset as _moved

sys.modules[__name__] = _moved
