"""Moved to multimem.data.sources.twemoji; this alias keeps the old import path working."""
import sys

from multimem.data.sources import twemoji as _moved

sys.modules[__name__] = _moved
