"""Statistics of a run's scores table, with how sure each figure is: the one home of these rules.

Pure pandas / numpy (no torch, no run directory), so the CLI, the pipeline and the dashboard share every rule.

- Intervals are 95% percentile bootstraps over samples, and over replicas too when a run has several (a two-level
  resampling: replicas with replacement, samples with replacement). scipy.stats.bootstrap resamples one level
  only, so the two-level case is written here; tests check the one-level case against scipy's.
- The calibrated score and the diagnostics are this project's extensions (METHOD.md section 6).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

CANDIDATE, INDEPENDENT, SHARED = "candidate", "independent", "shared"
SCORED = (CANDIDATE, INDEPENDENT, SHARED)
RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_PER_LABEL = 5  # S_S samples a label needs before its own mean calibrates it (else the S_S mean does)


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval; `replicas` says whether training noise is inside the interval."""

    estimate: float
    low: float
    high: float
    n: int
    replicas: int = 1

    @property
    def within_noise(self) -> bool:
        return bool(self.low <= 0 <= self.high) or not np.isfinite(self.estimate)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "within_noise": self.within_noise}

    def text(self, digits: int = 3) -> str:
        """"+0.031 [−0.004, +0.066], within noise"."""
        if not np.isfinite(self.estimate):
            return "–"
        out = f"{self.estimate:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return out + (", within noise" if self.within_noise else "")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Interval":
        return cls(**{k: d[k] for k in ("estimate", "low", "high", "n", "replicas") if k in d})


def replica_values(table: pd.DataFrame, column: str = "multimem_raw") -> np.ndarray:
    """K × N: the column per replica (`column_r0`, `column_r1`, ... when the run has replicas), else 1 × N."""
    cols = sorted((c for c in table.columns if c.startswith(f"{column}_r") and c[len(column) + 2:].isdigit()),
                  key=lambda c: int(c[len(column) + 2:]))
    if not cols:
        return table[column].to_numpy(float)[None, :]
    return table[cols].to_numpy(float).T


CHUNK = 2_000_000  # sample indices drawn and averaged at a time (16 MB), never the whole resamples × N matrix


def _bootstrap_means(rng: np.random.Generator, arrays: list[np.ndarray], n: int, resamples: int) -> list[np.ndarray]:
    """For each K × n array: K × resamples, each replica's mean over each bootstrap draw of the n samples.

    The draws are exactly those of `rng.integers(0, n, size=(resamples, n))` (one draw shared by every array:
    paired samples), taken in blocks of rows: the generator's stream continues from block to block, so the values
    and the generator's state afterwards are the same as drawing the whole matrix at once, without its memory
    (8 bytes per index: 640 MB for 2,000 draws of 40,000 samples). Blocks are averaged on two worker threads while
    the next is drawn (numpy releases the GIL in both), which changes no number: every mean is taken over the same
    values in the same order, into its own slot."""
    from concurrent.futures import ThreadPoolExecutor

    by_sample = [np.ascontiguousarray(np.asarray(a, dtype=float).T) for a in arrays]  # n × K
    out = [np.empty((a.shape[1], resamples)) for a in by_sample]
    step = max(1, CHUNK // max(1, n))

    def average(start: int, idx: np.ndarray) -> None:
        for values, means in zip(by_sample, out):  # the sums run in the order values[:, idx].mean(axis=2) takes
            means[:, start : start + len(idx)] = values.take(idx, axis=0).mean(axis=1).T

    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = []
        for start in range(0, resamples, step):
            idx = rng.integers(0, n, size=(min(step, resamples - start), n))
            pending.append(pool.submit(average, start, idx))
            if len(pending) > 3:  # at most three blocks in flight: bounded memory
                pending.pop(0).result()
        for job in pending:
            job.result()
    return out


def _pick_replicas(means: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """B: the mean over each draw's resampled replicas (picks: B × K replica indices)."""
    return np.take_along_axis(means.T, picks, axis=1).mean(axis=1)


def _interval(estimate: float, draws: np.ndarray, n: int, replicas: int) -> Interval:
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha]) if len(draws) else (np.nan, np.nan)
    return Interval(float(estimate), float(low), float(high), int(n), int(replicas))


def mean_interval(values: np.ndarray, seed: int = 0, resamples: int = RESAMPLES) -> Interval:
    """Mean of K × N values (K replicas of N samples; 1-D for one replica) with its interval."""
    values = np.atleast_2d(np.asarray(values, float))
    k, n = values.shape
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0, k)
    rng = np.random.default_rng(seed)
    (means,) = _bootstrap_means(rng, [values], n, resamples)
    return _interval(values.mean(), _pick_replicas(means, rng.integers(0, k, size=(resamples, k))), n, k)


def change_interval(before: np.ndarray, after: np.ndarray, paired: bool, same_models: bool = False,
                    seed: int = 0, resamples: int = RESAMPLES) -> Interval:
    """mean(after) − mean(before) with its interval.

    paired: the same samples in the same order (a run and its mitigation on S_C): one draw of samples for both.
    same_models: the replicas of `before` and `after` are the same models (two subsets of one run): one draw of
    replicas for both. Otherwise each side's replicas are drawn on their own.
    """
    a, b = np.atleast_2d(np.asarray(before, float)), np.atleast_2d(np.asarray(after, float))
    (ka, na), (kb, nb) = a.shape, b.shape
    if na == 0 or nb == 0:
        return Interval(np.nan, np.nan, np.nan, min(na, nb), min(ka, kb))
    if paired and na != nb:
        raise ValueError(f"paired samples need the same count, got {na} and {nb}")
    rng = np.random.default_rng(seed)
    if paired:  # one draw of samples for both
        means_a, means_b = _bootstrap_means(rng, [a, b], na, resamples)
    else:
        (means_a,) = _bootstrap_means(rng, [a], na, resamples)
        (means_b,) = _bootstrap_means(rng, [b], nb, resamples)
    pa = rng.integers(0, ka, size=(resamples, ka))
    pb = pa if same_models and ka == kb else rng.integers(0, kb, size=(resamples, kb))
    draws = _pick_replicas(means_b, pb) - _pick_replicas(means_a, pa)
    return _interval(b.mean() - a.mean(), draws, min(na, nb), min(ka, kb))


def same_samples(ids_a: pd.Series, ids_b: pd.Series) -> bool:
    """Whether two runs scored the same samples (ids in any order): whether their change can be paired."""
    a, b = pd.Index(ids_a), pd.Index(ids_b)
    return a.equals(b) or (len(a) == len(b) and a.sort_values().equals(b.sort_values()))


def paired_change(before: pd.DataFrame, after: pd.DataFrame, subset: str, column: str = "multimem_raw",
                  seed: int = 0) -> Interval:
    """Change of a subset's mean score between two runs of one split (a baseline and its mitigation): samples
    paired by id; each run's replicas, when it has several, resampled on their own."""
    a, b = before[before["subset"] == subset], after[after["subset"] == subset]
    ids_a = pd.Index(a["id"])
    if not (ids_a.is_unique and ids_a.equals(pd.Index(b["id"]))):  # else the same samples in the same order already
        a, b = a.set_index("id"), b.set_index("id")
        ids = a.index.intersection(b.index, sort=False)
        a, b = a.loc[ids], b.loc[ids]
    return change_interval(replica_values(a, column), replica_values(b, column), paired=True, seed=seed)


def shared_range(*tables: pd.DataFrame) -> float:
    """One normalisation range for several runs: max − min of all their raw scores together (METHOD.md 3: runs
    are compared on raw scores or on one shared range, never on ranges taken per run); 1 when there is no spread."""
    both = np.concatenate([t["multimem_raw"].to_numpy(float) for t in tables]) if tables else np.zeros(0)
    r = float(both.max() - both.min()) if len(both) else 0.0
    return r if r > 0 else 1.0


def subset_means(table: pd.DataFrame, column: str = "multimem") -> dict[str, float]:
    return {s: float(table.loc[table["subset"] == s, column].mean()) for s in SCORED}


def subset_intervals(table: pd.DataFrame, column: str = "multimem_raw") -> dict[str, Interval]:
    return {s: mean_interval(replica_values(table[table["subset"] == s], column), seed=i)
            for i, s in enumerate(SCORED)}


# ---- the calibrated score (METHOD.md section 6)

def calibration(table: pd.DataFrame, min_per_label: int = MIN_PER_LABEL) -> pd.DataFrame:
    """Two columns beside the paper's score: `multimem_calibrated` = raw − the scored S_S sample's mean (the
    model-level offset: both models trained on S_S, so its expected score is 0), and, when the samples have labels,
    `multimem_calibrated_label` = raw − the S_S mean of the same label (the S_S mean where a label has fewer than
    `min_per_label` scored S_S samples)."""
    raw = table["multimem_raw"].astype(float)
    shared = table["subset"] == SHARED
    offset = float(raw[shared].mean()) if shared.any() else 0.0
    out = pd.DataFrame({"multimem_calibrated": raw - offset}, index=table.index)
    labels = table["label"] if "label" in table.columns else None
    if labels is not None and labels.notna().any():
        per_label = raw[shared].groupby(labels[shared]).agg(["mean", "count"])
        usable = per_label.loc[per_label["count"] >= min_per_label, "mean"]
        out["multimem_calibrated_label"] = raw - labels.map(usable).fillna(offset).astype(float)
    return out


# ---- finding injected mis-captions (ground truth the demo records)

def roc_curve(labels: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """False and true positive rates at every distinct threshold (ties grouped), and the area under the curve."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("the ROC curve needs both injected and clean samples")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    fpr = np.r_[0.0, fp / neg]
    tpr = np.r_[0.0, tp / pos]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def precision_at_k(labels: Sequence[bool], scores: Sequence[float], ks: Sequence[int]) -> dict[int, float]:
    """Share of injected samples among the k highest scores (ties broken by position)."""
    y = np.asarray(labels, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    return {int(k): float(y[order[:k]].mean()) for k in ks if 0 < k <= len(y)}


def detection(table: pd.DataFrame, column: str = "multimem_raw", top: float = 0.05) -> dict[str, float] | None:
    """How well `column` ranks S_C's injected samples first: ROC-AUC and precision in the top `top` share."""
    cand = table[table["subset"] == CANDIDATE]
    if "injected" not in cand or not cand["injected"].any() or cand["injected"].all():
        return None
    k = max(1, int(round(top * len(cand))))
    return {"auc": roc_curve(cand["injected"], cand[column])[2],
            "precision_at_top": precision_at_k(cand["injected"], cand[column], [k])[k],
            "base_rate": float(cand["injected"].mean())}


def detection_by_score(table: pd.DataFrame) -> dict[str, dict[str, float] | None]:
    """detection by the paper's score, each calibrated score the table has, and a baseline: f's own image-caption
    cosine, lowest first (a pair f fits badly)."""
    by = {c: detection(table, c) for c in ("multimem_raw", "multimem_calibrated", "multimem_calibrated_label")
          if c in table}
    by["cos_f_low"] = detection(table.assign(cos_f_low=-table["cos_f"]), "cos_f_low")
    return by


# ---- diagnostics: how much of a score is signal

OFFSET_WARN = 0.5  # warn when |S_S mean| or the S_S between-label spread exceeds this share of the S_C − S_S gap


def diagnostics(table: pd.DataFrame, min_per_label: int = MIN_PER_LABEL) -> dict[str, Any]:
    """The model-level offset, the gaps between subsets (with intervals), per-label means and warnings."""
    sub = {s: table[table["subset"] == s] for s in SCORED}
    raw = {s: replica_values(sub[s]) for s in SCORED}
    out: dict[str, Any] = {
        "offset": mean_interval(raw[SHARED], seed=11).to_dict(),
        "held_difference": float((table["held_f"] - table["held_g"]).mean()),
        "own_difference": float((table["own_f"] - table["own_g"]).mean()),
        "gap_candidate_shared": change_interval(raw[SHARED], raw[CANDIDATE], paired=False, same_models=True,
                                                seed=12).to_dict(),
        "gap_shared_independent": change_interval(raw[INDEPENDENT], raw[SHARED], paired=False, same_models=True,
                                                  seed=13).to_dict(),
    }
    gap = out["gap_candidate_shared"]["estimate"]
    warnings = []
    offset = out["offset"]["estimate"]
    if not out["offset"]["within_noise"] and abs(offset) > OFFSET_WARN * max(gap, 0.0):
        warnings.append(
            f"The models differ as a whole: the S_S sample, which both trained on and whose expected score is 0, "
            f"averages {offset:+.4f} (raw; held-out term f − g {out['held_difference']:+.4f}) against an S_C − S_S "
            f"gap of {gap:+.4f}. Positive or negative raw scores mean little here: rank by the calibrated score, "
            "and reduce training noise with --replicas or more epochs.")
    if out["gap_candidate_shared"]["low"] <= 0:  # not above 0 beyond noise (within noise, or below)
        warnings.append("S_C does not score above S_S beyond noise: f has not measurably memorized its candidates "
                        "more than its shared samples; the ranking of S_C is mostly noise. Train longer, use a larger "
                        "model or fewer shared samples, or average --replicas.")
    if "label" in table.columns and table["label"].notna().any():
        per = (table[table["subset"].isin([CANDIDATE, SHARED])]
               .groupby(["label", "subset"])["multimem_raw"].agg(["mean", "count"]).reset_index())
        out["per_label"] = per.to_dict("records")
        shared_labels = per[(per["subset"] == SHARED) & (per["count"] >= min_per_label)]
        spread = float(shared_labels["mean"].std()) if len(shared_labels) > 1 else 0.0
        out["label_spread_shared"] = spread
        if spread > OFFSET_WARN * max(gap, 0.0) and len(shared_labels) > 1:
            warnings.append(
                f"Labels differ more than samples do: the mean score of S_S per label spreads by {spread:.4f} (sd) "
                f"against an S_C − S_S gap of {gap:+.4f}, so the most memorized pairs are mostly the samples of "
                "some labels. Rank by the label-calibrated score (multimem_calibrated_label).")
    out["warnings"] = warnings
    return out


def summarise(table: pd.DataFrame) -> dict[str, Any]:
    """What a run's manifest keeps of its scores: subset means (normalised, raw with intervals), the calibrated
    means, injected-sample detection by every score column, and the diagnostics."""
    out: dict[str, Any] = {
        "mean_multimem": subset_means(table, "multimem"),
        "mean_multimem_raw": subset_means(table, "multimem_raw"),
        "intervals_raw": {s: i.to_dict() for s, i in subset_intervals(table).items()},
        "diagnostics": diagnostics(table),
    }
    if "multimem_calibrated" in table:
        out["mean_multimem_calibrated"] = subset_means(table, "multimem_calibrated")
    found = detection(table)
    if found:
        out["injected_auc"] = found["auc"]
        out["injected_precision_at_5pct"] = found["precision_at_top"]
        out["injected_share"] = found["base_rate"]
        out["injected_detection"] = detection_by_score(table)
    return out
