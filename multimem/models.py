"""Moved to multimem.model.factory; this alias keeps the old import path working for one release."""
import sys

from multimem.model import factory as _moved

sys.modules[__name__] = _moved
