"""Moved to multimem.app.curation; this alias keeps the old import path working for one release."""
import sys

from multimem.app import curation as _moved

sys.modules[__name__] = _moved
