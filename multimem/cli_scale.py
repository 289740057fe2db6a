"""Moved to multimem.cli.scale; this alias keeps the old import path working for one release."""
import sys

from multimem.cli import scale as _moved

sys.modules[__name__] = _moved
