"""Moved to multimem.data.images; this alias keeps the old import path working for one release."""
import sys

from multimem.data import images as _moved

sys.modules[__name__] = _moved
