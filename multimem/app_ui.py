"""Moved to multimem.app.ui; this alias keeps the old import path working for one release."""
import sys

from multimem.app import ui as _moved

sys.modules[__name__] = _moved
