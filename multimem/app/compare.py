"""Two runs side by side (Compare): scores on one scale (raw differences or one shared normalisation range), the
per-subset means and their change with its interval in words, the pairs both runs scored, and which run is the
baseline. The statistics are multimem.summary's."""
from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from multimem import summary
from multimem.app.columns import SCORED_SUBSETS, SUBSET_LABELS
from multimem.app.views import plain
from multimem.data.splits import CANDIDATE

COMPARE_MODES = {"shared": "one shared normalisation range", "raw": "raw differences (CMC_f − CMC_g)"}


def compare_values(df: pd.DataFrame, mode: str, value_range: float) -> pd.Series:
    """Scores to compare: raw differences, or raw / the shared range (never a per-run range)."""
    if mode not in COMPARE_MODES:
        raise ValueError(f"compare mode must be one of {', '.join(COMPARE_MODES)}")
    raw = df["multimem_raw"].astype(float)
    return raw if mode == "raw" else raw / value_range


def relative_change(a: float, b: float) -> float | None:
    """(b − a) / |a|: the same on raw differences and on a shared range (a common scale cancels)."""
    if a == 0 or not math.isfinite(a) or not math.isfinite(b):
        return None
    return (b - a) / abs(a)


def compare_means(a: pd.DataFrame, b: pd.DataFrame, mode: str, value_range: float) -> pd.DataFrame:
    """Per scored subset: each run's mean on the compared scale (summary.subset_means), the change and the
    relative change."""
    ma = summary.subset_means(a.assign(compared=compare_values(a, mode, value_range)), "compared")
    mb = summary.subset_means(b.assign(compared=compare_values(b, mode, value_range)), "compared")
    return pd.DataFrame([{"subset": SUBSET_LABELS[s], "A": ma[s], "B": mb[s], "change": mb[s] - ma[s],
                          "relative change": relative_change(ma[s], mb[s])} for s in SCORED_SUBSETS])


def compare_join(a: pd.DataFrame, b: pd.DataFrame, mode: str, value_range: float,
                 subset: str = CANDIDATE) -> pd.DataFrame:
    """Samples that are `subset` in both runs, with both scores and the change, biggest move first."""
    ka = a.loc[a["subset"] == subset, ["id", "caption", "injected"]].assign(A=compare_values(a, mode, value_range))
    kb = b.loc[b["subset"] == subset, ["id"]].assign(B=compare_values(b, mode, value_range))
    joined = ka.merge(kb, on="id", how="inner")
    joined["change"] = joined["B"] - joined["A"]
    biggest_first = joined["change"].abs().sort_values(ascending=False, kind="stable").index
    return joined.reindex(biggest_first).reset_index(drop=True)


def subset_changes(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per scored subset, mean(b) − mean(a) of the raw score with its 95% interval (an Interval dict, plus
    `paired` and each run's replica count). Paired by sample id when both runs scored the same samples of the subset
    (one split: a run and its mitigation), else each run's samples drawn on their own; each run's replicas, when it
    has several, are resampled too (multimem.summary)."""
    out = {}
    for seed, s in enumerate(SCORED_SUBSETS):
        sa, sb = a[a["subset"] == s], b[b["subset"] == s]
        va, vb = summary.replica_values(sa), summary.replica_values(sb)
        paired = len(sa) > 0 and summary.same_samples(sa["id"], sb["id"])
        if paired:
            iv = summary.paired_change(a, b, s, seed=seed)
        else:
            iv = summary.change_interval(va, vb, paired=False, seed=seed)
        out[s] = {**iv.to_dict(), "paired": bool(paired), "replicas_a": int(va.shape[0]),
                  "replicas_b": int(vb.shape[0])}
    return out


def scaled(interval: Mapping[str, Any], scale: float):
    """An Interval dict divided by a positive scale (raw differences onto a shared range), as an Interval."""
    iv = summary.Interval.from_dict(interval)
    return summary.Interval(iv.estimate / scale, iv.low / scale, iv.high / scale, iv.n, iv.replicas)


def change_sentence(subset: str, interval: Mapping[str, Any], a: str, b: str, scale: float = 1.0,
                    digits: int = 4) -> str:
    """One sentence naming both runs, e.g. "S_C candidates: less memorized in demo.noise than in demo: −0.0120
    [−0.0200, −0.0040]" (Markdown: run names go through `plain`)."""
    iv = scaled(interval, scale)
    what = SUBSET_LABELS.get(subset, subset)
    ra, rb = plain(a, None), plain(b, None)
    if not math.isfinite(iv.estimate):
        return f"{what}: no samples to compare between {ra} and {rb}"
    text = iv.text(digits).replace("-", "−")
    if iv.within_noise:
        return f"{what}: no change beyond noise from {ra} to {rb}: {text}"
    if subset == CANDIDATE:
        how = "less memorized" if iv.estimate < 0 else "more memorized"
    else:
        how = "scores lower" if iv.estimate < 0 else "scores higher"
    return f"{what}: {how} in {rb} than in {ra}: {text}"


def lineage_chain(name: str, parent_of: Mapping[str, Any], limit: int = 50) -> list[str]:
    """The run's ancestors, nearest first (parent, grandparent, ...), from a name -> parent mapping."""
    out: list[str] = []
    current = parent_of.get(name)
    while isinstance(current, str) and current and current not in out and current != name and len(out) < limit:
        out.append(current)
        current = parent_of.get(current)
    return out


def baseline_of(x: str, y: str, parent_of: Mapping[str, Any]) -> str:
    """Which of two runs is the baseline (run A on Compare): the ancestor when one derives from the other (a
    mitigated run is compared against the run it came from), else `x`."""
    if x in lineage_chain(y, parent_of):
        return x
    if y in lineage_chain(x, parent_of):
        return y
    return x

