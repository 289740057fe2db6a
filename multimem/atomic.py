"""Moved to multimem.store.atomic; this alias keeps the old import path working for one release."""
import sys

from multimem.store import atomic as _moved

sys.modules[__name__] = _moved
