"""The numbers behind the pages' figures, so that a figure sends a few numbers and not every score: histogram bins,
box-plot statistics per label, the k's of precision at k."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from multimem.data.splits import CANDIDATE, SHARED


def default_ks(n: int, positives: int) -> list[int]:
    """The k's the Overview reports precision at k for (summary.precision_at_k), among n samples of which
    `positives` are injected."""
    return sorted({k for k in (5, 10, 20, 50, 100, positives, max(1, round(0.05 * n))) if 0 < k <= n})


def histogram(values: np.ndarray, bins: int = 40, lo: float | None = None, hi: float | None = None):
    """Bin centres, counts and width: the page plots bars, so a 100k-row run sends 40 numbers, not 100k."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    lo = float(values.min()) if lo is None and len(values) else (lo if lo is not None else 0.0)
    hi = float(values.max()) if hi is None and len(values) else (hi if hi is not None else 1.0)
    if hi <= lo:
        hi = lo + 1e-6
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return (edges[:-1] + edges[1:]) / 2, counts, edges[1] - edges[0]


def label_stats(table: pd.DataFrame, column: str = "multimem_raw", subsets: Sequence[str] = (CANDIDATE, SHARED),
                limit: int = 30) -> pd.DataFrame:
    """Per label and subset: count, mean and the quartiles, minimum and maximum of `column`, for a box plot that
    sends a few numbers per box instead of every score. At most `limit` labels (the most scored samples first);
    rows ordered by the S_S mean of their label, highest first (labels without S_S samples last)."""
    cols = ["label", "subset", "count", "mean", "min", "q1", "median", "q3", "max"]
    if "label" not in table.columns or not table["label"].notna().any():
        return pd.DataFrame(columns=cols)
    rows = table[table["subset"].isin(subsets) & table["label"].notna()]
    values = rows[column].astype(float)
    g = values.groupby([rows["label"].astype(str), rows["subset"]])
    stats = pd.DataFrame({"count": g.size(), "mean": g.mean(), "min": g.min(), "q1": g.quantile(0.25),
                          "median": g.median(), "q3": g.quantile(0.75), "max": g.max()}).reset_index()
    stats.columns = cols
    kept = stats.groupby("label")["count"].sum().sort_values(ascending=False, kind="stable").head(limit).index
    stats = stats[stats["label"].isin(kept)]
    shared_mean = stats[stats["subset"] == SHARED].set_index("label")["mean"]
    order = {lab: i for i, lab in enumerate(
        sorted(kept, key=lambda lab: (-shared_mean.get(lab, -np.inf) if lab in shared_mean.index else np.inf, lab)))}
    return stats.sort_values(["label", "subset"], key=lambda c: c.map(order) if c.name == "label" else c,
                             kind="stable").reset_index(drop=True)

