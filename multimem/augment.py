"""Moved to multimem.model.augment; this alias keeps the old import path working for one release."""
import sys

from multimem.model import augment as _moved

sys.modules[__name__] = _moved
