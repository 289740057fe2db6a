"""Moved to multimem.interop.openclip_train; this alias keeps the old import path working for one release."""
import sys

from multimem.interop import openclip_train as _moved

sys.modules[__name__] = _moved
