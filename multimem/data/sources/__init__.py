"""Data sources: each turns a dataset on disk into a list of image-caption `Pair`s."""
from __future__ import annotations

from typing import Any

from multimem.data.sources.base import DataError, DataSource, Pair, Skipped
from multimem.data.sources.coco import CocoSource
from multimem.data.sources.csv import CsvSource
from multimem.data.sources.webdataset import WebDatasetSource

__all__ = ["Pair", "DataSource", "DataError", "Skipped", "CsvSource", "WebDatasetSource", "CocoSource", "open_source"]

KINDS = ("csv", "wds", "coco", "twemoji")


def open_source(spec: dict[str, Any]) -> DataSource:
    """Build a source again from its `spec()` (as stored in a run manifest)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise DataError(f"source spec {spec!r}: needs a 'kind', one of {', '.join(KINDS)}")
    rest = {k: v for k, v in spec.items() if k != "kind"}
    kind = spec["kind"]
    if kind == "csv":
        cls = CsvSource
    elif kind == "wds":
        cls = WebDatasetSource
    elif kind == "coco":
        cls = CocoSource
    elif kind == "twemoji":
        from multimem.data.sources.twemoji import TwemojiSource  # lazy: needs the twemoji packages

        cls = TwemojiSource
    else:
        raise DataError(f"unknown source kind {kind!r}; known kinds: {', '.join(KINDS)}")
    try:
        return cls(**rest)
    except TypeError as exc:  # wrong or missing arguments in a hand-written / old spec
        raise DataError(f"source spec {spec!r}: {exc}") from None
