"""Moved to multimem.engine.embeddings; this alias keeps the old import path working for one release."""
import sys

from multimem.engine import embeddings as _moved

sys.modules[__name__] = _moved
