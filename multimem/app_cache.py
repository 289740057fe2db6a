"""Moved to multimem.app.cache; this alias keeps the old import path working for one release."""
import sys

from multimem.app import cache as _moved

sys.modules[__name__] = _moved
