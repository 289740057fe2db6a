"""Moved to multimem.app.report; this alias keeps the old import path working for one release."""
import sys

from multimem.app import report as _moved

sys.modules[__name__] = _moved
