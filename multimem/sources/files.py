"""Moved to multimem.data.sources.files; this alias keeps the old import path working."""
import sys

from multimem.data.sources import files as _moved

sys.modules[__name__] = _moved
