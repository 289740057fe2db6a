"""Moved to multimem.mitigation.base (settings are declared by each strategy); kept for one release."""
from multimem.mitigation.base import Option, options, parse_option  # noqa: F401

OPTIONS = options()
