"""Moved to multimem.data.sources.csv, .webdataset and .coco (one module per format); these names keep the old
import path working for one release."""
from multimem.data.sources.coco import CocoSource  # noqa: F401
from multimem.data.sources.csv import CsvSource, literal_separator  # noqa: F401
from multimem.data.sources.webdataset import WebDatasetSource  # noqa: F401
