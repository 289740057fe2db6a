"""The columns of a scores table the pages offer (sort keys, scatter axes, the score range filter), with the words
the pages show for them and for the subsets; the scale of each score column.

The per-encoder and per-pair columns come from the modality table (multimem.modalities): a run shows the
SSLMem column of each of its modalities, and the pair columns a run with more than two modalities writes.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from multimem import modalities
from multimem.data.splits import CANDIDATE, INDEPENDENT, SHARED

SCORED_SUBSETS = (CANDIDATE, INDEPENDENT, SHARED)
SUBSET_SHORT = {CANDIDATE: "S_C", INDEPENDENT: "S_I", SHARED: "S_S", "extra": "S_E"}
SUBSET_LABELS = {CANDIDATE: "S_C candidates", INDEPENDENT: "S_I independent", SHARED: "S_S shared",
                 "extra": "S_E extra"}
INJECTED = ("any", "yes", "no")  # the injected filter's choices
PER_PAGE = (12, 24, 48, 96)

# the scores every run has, with the words the page shows
SCORES = {
    "multimem": "MultiMem (normalised)",
    "multimem_raw": "MultiMem (raw)",
    "cmc_f": "CMC_f",
    "cmc_g": "CMC_g",
    "cos_f": "f image-text cosine",
    "cos_g": "g image-text cosine",
}


def encoder_columns(names: Sequence[str]) -> dict[str, str]:
    """The per-encoder SSLMem column of each modality."""
    return {modalities.sslmem_column(m): f"SSLMem {m}" for m in names}


def pair_columns(names: Sequence[str]) -> dict[str, str]:
    """The MultiMem column of each pair of modalities (a run with more than two modalities writes them)."""
    return {modalities.pair_column(a, b): f"MultiMem {modalities.pair_name(a, b)} pair"
            for a, b in modalities.pairs(tuple(names))}


# columns a user can sort by or put on a scatter axis, for a run of the default modalities
COLUMNS = {**SCORES, **encoder_columns(modalities.DEFAULT)}
# calibrated scores (multimem.summary): sortable, on the scatter and filterable only in a table that has them
CALIBRATED = {"multimem_calibrated": "MultiMem calibrated (raw − S_S mean)",
              "multimem_calibrated_label": "MultiMem calibrated per label (raw − S_S mean of its label)"}
SCORE_FILTERS = ("multimem", *CALIBRATED)  # what the score range filters on (URL `score`)


def table_modalities(df: pd.DataFrame | None) -> tuple[str, ...]:
    """The modalities whose SSLMem column the table holds (the default ones when it holds none)."""
    cols = set(df.columns) if df is not None else set()
    return tuple(m for m in modalities.TABLE if modalities.sslmem_column(m) in cols) or modalities.DEFAULT


def columns_for(df: pd.DataFrame | None) -> dict[str, str]:
    """The columns of this table a page offers: the scores, one SSLMem column per modality, the pair columns and
    the calibrated scores where the table has them."""
    cols = df.columns if df is not None else ()
    names = table_modalities(df)
    pairs = {c: t for c, t in pair_columns(names).items() if c in cols}
    return {**SCORES, **encoder_columns(names), **pairs, **{c: t for c, t in CALIBRATED.items() if c in cols}}


def sorts_for(df: pd.DataFrame | None) -> dict[str, str]:
    return {**columns_for(df), "id": "sample id"}


def norm_factor(df: pd.DataFrame) -> float:
    """1 / the run's normalisation range, read off the table (multimem = multimem_raw / range)."""
    raw, norm = df["multimem_raw"].to_numpy(float), df["multimem"].to_numpy(float)
    ok = np.isfinite(raw) & np.isfinite(norm) & (np.abs(raw) > 1e-12)
    return float(np.median(norm[ok] / raw[ok])) if ok.any() else 1.0


def score_values(df: pd.DataFrame, column: str = "multimem") -> np.ndarray:
    """A score column on the normalised scale (raw-unit columns divided by the run's range), for the range filter."""
    if column == "multimem" or column not in df.columns:
        return df["multimem"].to_numpy(float)
    return df[column].to_numpy(float) * norm_factor(df)


def colour_range(values: Sequence[float]) -> float:
    """Half-width of a colour scale symmetric around 0 that fits the data (its largest |value|, never 0)."""
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    top = float(v.max()) if len(v) else 0.0
    return top if top > 0 else 1.0


def has_injected(manifest: Mapping[str, Any], table: pd.DataFrame | None = None) -> bool:
    """Whether a run has injected mis-captions: the manifest counts some (dataset.n_injected > 0) or the scores
    table flags some. Pages mention injection (filters, badges, ROC figures) only then."""
    dataset = manifest.get("dataset") if isinstance(manifest, Mapping) else None
    count = dataset.get("n_injected") if isinstance(dataset, Mapping) else None
    try:
        if count is not None and float(count) > 0:
            return True
    except (TypeError, ValueError):
        pass
    if table is None or "injected" not in table.columns:
        return False
    return bool(table["injected"].fillna(False).astype(bool).any())
