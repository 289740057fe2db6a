"""Why a pair scores as it does, in words a reviewer can read: its percentile in its subset, its calibrated scores,
how well its neighbours' captions agree with its own, whether f's neighbourhood is too tight to say anything, and
how the neighbours were searched."""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from multimem import modalities, summary
from multimem.app.views import plain
from multimem.data.splits import CANDIDATE, INDEPENDENT, SHARED


def subset_percentiles(table: pd.DataFrame, rows: pd.DataFrame, column: str = "multimem") -> np.ndarray:
    """Each row's percentile (0-100) of `column` among the scored pairs of its own subset in `table`."""
    out = np.full(len(rows), np.nan)
    for subset in rows["subset"].unique():
        ref = np.sort(table.loc[table["subset"] == subset, column].to_numpy(float))
        here = (rows["subset"] == subset).to_numpy()
        if len(ref):
            out[here] = np.searchsorted(ref, rows.loc[here, column].to_numpy(float), side="right") / len(ref) * 100
    return out


def ordinal(n: float) -> str:
    k = int(round(n))
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"a", "an", "the", "with", "of", "and", "from", "emoji", "skin", "tone", "light", "medium", "dark", "face"}


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(str(text).lower()) if w not in _STOP}


def caption_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the content words of two captions (0: nothing in common, 1: the same words)."""
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def neighbour_agreement(caption: str, neighbour_captions: Sequence[Sequence[str]], threshold: float = 0.34) -> float:
    """Share of neighbours with a caption that shares at least a third of its words with `caption`."""
    if not neighbour_captions:
        return 0.0
    hits = [max((caption_overlap(caption, c) for c in caps), default=0.0) >= threshold for caps in neighbour_captions]
    return float(np.mean(hits))


def calibrated_row(table: pd.DataFrame, row: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
    """The calibrated scores of one scored row, as {title: (value, what it is)}: the scores table's columns, or, for
    a run scored before they existed, summary.calibration of the table."""
    def stored(column: str) -> float | None:
        return float(row[column]) if column in table.columns and row.get(column) is not None else None

    overall, by_label = stored("multimem_calibrated"), stored("multimem_calibrated_label")
    if (overall is None or by_label is None) and (table["subset"] == SHARED).any():
        computed = summary.calibration(table).loc[table["id"] == row["id"]].iloc[0]
        overall = float(computed["multimem_calibrated"]) if overall is None else overall
        if by_label is None and isinstance(row.get("label"), str) and "multimem_calibrated_label" in computed:
            by_label = float(computed["multimem_calibrated_label"])
    if overall is None:
        return {}
    out = {"Calibrated (− S_S mean)": (overall, "Raw score minus the mean raw score of the scored S_S sample: the "
                                                "model-level offset removed")}
    if by_label is not None and math.isfinite(by_label):
        out["Calibrated per label"] = (by_label, "Raw score minus the mean raw score of S_S samples with this "
                                                 "label (the S_S mean when the label has fewer than "
                                                 f"{summary.MIN_PER_LABEL})")
    return out


COLLAPSED = 0.99  # f's cosine to its nearest training neighbours at or above which they barely differ from each other


def collapsed(similarities: Sequence[float], threshold: float = COLLAPSED) -> bool:
    """Whether every neighbour found is at cosine ≥ threshold: f's embeddings hardly separate samples (a weakly
    trained model), so its nearest neighbours say little about this one."""
    sims = np.asarray(list(similarities), dtype=float)
    return bool(len(sims)) and bool(np.all(sims >= threshold))


def index_note(index: Mapping[str, Any] | None) -> str:
    """One line on how the neighbours were searched: exact, or approximate with its measured recall."""
    if not index:
        return ""
    n = f"{index.get('vectors', 0):,} training samples"
    if index.get("exact", True):
        return f"Exact search over {n}."
    recall = index.get("recall_at_10") or {}
    measured = ", ".join(f"{m} {v:.3f}" for m, v in recall.items())
    return (f"Approximate search over {n} ({index.get('kind')}, {index.get('nlist')} lists, {index.get('nprobe')} "
            f"probed): recall@10 against exact search {measured or 'not measured'}; a true neighbour can be missing.")


# what a neighbour tab shows, where the words say more than the modality table's nouns (neighbour_tabs)
NEIGHBOUR_NOTES = {
    "image": "training images f finds most similar to this image; their captions show what the data says this "
             "image is",
    "text": "training captions f finds most similar to this caption, with their images",
}


def neighbour_tabs(names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Neighbour kind → (tab title, what it shows) for every FAISS lookup of a run with these modalities: by each
    modality, then across each ordered pair (modalities.neighbour_kinds)."""
    tabs = {}
    for kind, (query, target) in modalities.neighbour_kinds(names).items():
        q, t = modalities.TABLE[query], modalities.TABLE[target]
        if query == target:
            tabs[kind] = (f"By {query}", NEIGHBOUR_NOTES.get(kind, f"training {t.plural} f finds most similar to "
                                                                   f"this {q.noun}"))
        else:
            tabs[kind] = (f"{q.noun.capitalize()} → {t.plural}",
                          f"training {t.plural} f matches to this {q.noun} (across modalities)")
    return tabs


def explain(row: Mapping[str, Any], image_neighbour_captions: Sequence[Sequence[str]]) -> str:
    """A few sentences a reviewer can read: why f agrees with this pair more (or less) than g does (Markdown: the
    captions in it go through `plain`)."""
    trained_f = row.get("subset") in (CANDIDATE, SHARED)
    trained_g = row.get("subset") in (INDEPENDENT, SHARED)
    parts = [
        f"f ({'trained' if trained_f else 'not trained'} on this pair) aligns its image and caption at cosine "
        f"{float(row.get('cos_f', float('nan'))):.3f}, g ({'trained' if trained_g else 'not trained'} on it) at "
        f"{float(row.get('cos_g', float('nan'))):.3f}."
    ]
    k = len(image_neighbour_captions)
    agree = neighbour_agreement(str(row["caption"]), image_neighbour_captions)
    memorized = float(row.get("multimem_raw", 0.0)) > 0
    if k:
        parts.append(f"{round(agree * k)} of its {k} nearest training images (by f's image embedding) carry a caption "
                     f"like '{plain(row['caption'], None)}'.")
    if memorized and k and agree < 0.5:
        parts.append("f still ties this image to this caption better than g does, although similar-looking training "
                     "images say otherwise: the pattern of memorization (f learned this pair itself, not a rule the "
                     "data teaches).")
    elif memorized:
        parts.append("f ties this image to this caption better than g does; similar training images carry similar "
                     "captions, so part of that can be generalisation from them.")
    else:
        parts.append("f does not align this pair better than g: no sign that f memorized it.")
    if row.get("injected"):
        parts.append(f"This caption was swapped in on purpose (injected mis-caption); the image shows "
                     f"'{plain(row.get('original_caption'), None)}'.")
    return " ".join(parts)
