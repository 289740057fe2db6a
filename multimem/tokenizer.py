"""Moved to multimem.model.tokenizer; this alias keeps the old import path working for one release."""
import sys

from multimem.model import tokenizer as _moved

sys.modules[__name__] = _moved
