"""Moved to multimem.data.sources.base; this alias keeps the old import path working."""
import sys

from multimem.data.sources import base as _moved

sys.modules[__name__] = _moved
