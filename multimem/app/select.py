"""Browse's rows: the caption search, the filters of a view, a stable sort, pages, and where a sample stands."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from multimem.app.columns import score_values
from multimem.app.views import BrowseView


def search_text(df: pd.DataFrame) -> pd.Series:
    """Lower-case text of all captions of each row, for the caption search."""
    if "captions" in df.columns:
        return df["captions"].map(lambda cs: " | ".join(str(c) for c in cs).lower() if cs is not None else "")
    return df["caption"].astype(str).str.lower()


def filter_mask(df: pd.DataFrame, view: BrowseView, text: pd.Series | None = None) -> np.ndarray:
    """Rows matching every filter of the view (the scatter region included)."""
    # combined with `&`, never in place: pandas may hand out read-only arrays
    mask = df["subset"].isin(view.subsets).to_numpy(dtype=bool)
    score = score_values(df, view.score)
    if view.lo > -1.0:
        mask = mask & (score >= view.lo)
    if view.hi < 1.0:
        mask = mask & (score <= view.hi)
    if view.labels:
        mask = mask & df["label"].isin(view.labels).to_numpy()
    if view.injected != "any":
        mask = mask & (df["injected"].to_numpy(dtype=bool) == (view.injected == "yes"))
    if view.text:
        haystack = text if text is not None else search_text(df)
        mask = mask & haystack.str.contains(view.text.lower(), regex=False).to_numpy(dtype=bool)
    if view.region is not None:
        mask = mask & view.region.contains(df[view.x].to_numpy(), df[view.y].to_numpy())
    return mask


def sort_rows(df: pd.DataFrame, sort: str, order: str) -> pd.DataFrame:
    """Stable sort, ties broken by id so that a page always shows the same pairs."""
    if sort == "id":
        return df.sort_values("id", ascending=order == "asc", kind="stable")
    return df.sort_values([sort, "id"], ascending=[order == "asc", True], kind="stable")


def select(df: pd.DataFrame, view: BrowseView, text: pd.Series | None = None) -> pd.DataFrame:
    """Filtered and sorted rows of the view (all pages)."""
    return sort_rows(df[filter_mask(df, view, text)], view.sort, view.order)


def page_of(rows: pd.DataFrame, page: int, per_page: int) -> tuple[pd.DataFrame, int, int]:
    """One page of rows; the page number is clamped to 1..last. Returns rows, page, number of pages."""
    pages = max(1, math.ceil(len(rows) / per_page))
    page = min(max(1, page), pages)
    return rows.iloc[(page - 1) * per_page : page * per_page], page, pages


def position_in(rows: pd.DataFrame, sid: str, per_page: int = BrowseView.per_page) -> dict[str, Any] | None:
    """Where sample `sid` stands in Browse's selected rows: its 1-based position, the count, the previous and next
    ids (None at the ends) and the Browse page that shows it; None when the view does not hold it."""
    ids = rows["id"].astype(str).to_numpy()
    hits = np.flatnonzero(ids == str(sid))
    if not len(hits):
        return None
    i = int(hits[0])
    return {"position": i + 1, "count": len(ids), "previous": ids[i - 1] if i > 0 else None,
            "next": ids[i + 1] if i + 1 < len(ids) else None, "page": i // per_page + 1}


def scatter_sample(rows: pd.DataFrame, limit: int = 3000, seed: int = 0) -> pd.DataFrame:
    """At most `limit` points for the scatter (seeded); the region still filters every row, not just these."""
    if len(rows) <= limit:
        return rows
    return rows.sample(n=limit, random_state=seed)
