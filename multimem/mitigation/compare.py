"""A mitigated run against its parent: memorization before and after (raw, on one shared range, with paired 95%
intervals), f's and g's utility, the injected pairs' detection, and what the mitigation cost."""
from __future__ import annotations

from typing import Any

import pandas as pd

from multimem import modalities, summary
from multimem.data.splits import CANDIDATE, INDEPENDENT, SHARED
from multimem.mitigation.base import get
from multimem.store.runs import Run
from multimem.store.manifest import Manifest


def utility_row(m: dict, tag: str = "f") -> dict:
    """Model `tag`'s retrieval recalls (every ordered pair of the run's modalities), their mean R@5, zero-shot."""
    u = Manifest(m).utility(tag)
    directions = [modalities.cross_kind(a, b) for a, b in modalities.retrieval_pairs(modalities.of(m.get("config")))]
    out = {f"{d}_R@{k}": u.get(f"{d}_R@{k}") for d in directions for k in (1, 5, 10)}
    out["zero_shot_top1"] = u.get("zero_shot_top1")
    if u:
        out["mean_R@5"] = sum(u[f"{d}_R@5"] for d in directions) / len(directions)
    return out


def compare(parent: Run, child: Run) -> dict:
    """Memorization (raw and on one shared range) and f's utility, before and after; stored in the child."""
    pm, cm = parent.manifest(), child.manifest()
    ps, cs = parent.scores(), child.scores()
    r = summary.shared_range(ps, cs)
    out: dict[str, Any] = {"parent": parent.name, "shared_range": r, "subsets": {}}
    for s in (CANDIDATE, INDEPENDENT, SHARED):
        a = float(ps.loc[ps.subset == s, "multimem_raw"].mean())
        b = float(cs.loc[cs.subset == s, "multimem_raw"].mean())
        change = summary.paired_change(ps, cs, s)  # 95% interval: samples paired by id, replicas when any
        out["subsets"][s] = {"parent_raw": a, "raw": b, "parent_shared": a / r, "shared": b / r,
                             "relative_change": (b - a) / abs(a) if a else None, "change": change.to_dict(),
                             "relative_interval": [change.low / abs(a), change.high / abs(a)] if a else None}
    removed_path = child.files.ranking
    n = int((Manifest(cm).lineage.get("mitigation") or {}).get("n") or 0)
    if removed_path.exists() and n:
        gone = set(pd.read_parquet(removed_path).head(n)["id"])
        cand_p, cand_c = ps[ps.subset == CANDIDATE], cs[cs.subset == CANDIDATE]
        for label, keep in (("removed", True), ("kept", False)):
            a = cand_p.loc[cand_p["id"].isin(gone) == keep, "multimem_raw"]
            b = cand_c.loc[cand_c["id"].isin(gone) == keep, "multimem_raw"]
            out["subsets"][f"candidate_{label}"] = {"n": int(len(b)), "parent_raw": float(a.mean()) if len(a) else None,
                                                     "raw": float(b.mean()) if len(b) else None}
    out["utility_f"] = {"parent": utility_row(pm, "f"), "run": utility_row(cm, "f")}
    out["utility_g"] = {"parent": utility_row(pm, "g"), "run": utility_row(cm, "g")}
    out["injected_auc"] = {"parent": Manifest(pm).injected_auc, "run": Manifest(cm).injected_auc}
    return out


def cost_of(parent_m: dict, child_m: dict, strategy: str) -> dict:
    """Wall-clock seconds of the mitigation against the parent's plain training of f and g (the run's scoring,
    evaluation and indexing, the same for every run, are left out). Wall-clock: other load on the machine counts."""
    pt = Manifest(parent_m).timings
    plain = (pt.get("train_f") or 0) + (pt.get("train_g") or 0)
    extra = Manifest(child_m).mitigation.get("cost_seconds") or {}
    spent = get(strategy).cost_seconds(Manifest(child_m).timings, extra)
    return {"parent_training_seconds": round(plain, 2), "mitigation_seconds": round(spent, 2),
            "relative_to_parent_training": round(spent / plain, 3) if plain else None, **extra}
