"""Moved to multimem.pipeline.presets; this alias keeps the old import path working for one release."""
import sys

from multimem.pipeline import presets as _moved

sys.modules[__name__] = _moved
