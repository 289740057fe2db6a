"""Moved to multimem.data.sources; this package of aliases keeps the old import paths working for one release."""
from multimem.data.sources import KINDS, CocoSource, CsvSource, DataError, DataSource, Pair, Skipped  # noqa: F401
from multimem.data.sources import WebDatasetSource, open_source  # noqa: F401
