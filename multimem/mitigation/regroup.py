"""In-training regrouping (METHOD.md 4): f and g retrained; every `every` epochs the training samples are scored
against K-fold reference models (multimem.mitigation.kfold) and the top `top` share go into their own
mini-batches with a targeted augmentation."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from multimem.data.splits import CANDIDATE
from multimem.errors import MitigationError
from multimem.mitigation.base import (Strategy, changed_settings, check_folds, fold_seed_setting, folds_setting,
                                     register, setting)
from multimem.store.atomic import atomic_parquet
from multimem.store.runs import Run

if TYPE_CHECKING:  # torch: imported where the training runs
    from multimem.data.dataset import PairData


@dataclass
class RegroupParams:
    every: int = setting(10, "int", "Rescore every (epochs)", "rescore the training samples every K epochs (the "
                         "paper's: 10)", main=True)
    top: float = setting(0.05, "float", "Top share grouped", "share of training samples put into their own "
                         "mini-batches (the paper's top 5%)", main=True)
    folds: int = folds_setting()
    fold_seed: int = fold_seed_setting()
    hot_crop_min: float = setting(0.25, "float", "Targeted: smallest crop", "targeted augmentation's smallest crop "
                                  "area (training: 0.5)")
    hot_jitter: float = setting(0.5, "float", "Targeted: colour jitter", "targeted augmentation's colour jitter "
                                "(training: 0.3)")
    token_dropout: float = setting(0.1, "float", "Targeted: word dropout", "targeted augmentation's caption word "
                                   "dropout probability")
    score_augmentations: int = setting(2, "int", "A for in-training scores", "augmented views per sample for the "
                                       "in-training scores (the run's own scores keep the parent's A)")

    def check(self) -> None:
        if not isinstance(self.every, int) or self.every < 1:
            raise MitigationError(f"regroup every must be a whole number of epochs >= 1, got {self.every}")
        if not (0 < self.top < 1):
            raise MitigationError(f"regroup top must be a share in (0, 1), e.g. 0.05; got {self.top}")
        check_folds(self.folds)
        if not (0 < self.hot_crop_min <= 1):
            raise MitigationError(f"hot crop min must be in (0, 1], got {self.hot_crop_min}")
        if not (0 <= self.hot_jitter < 1):
            raise MitigationError(f"hot jitter must be in [0, 1), got {self.hot_jitter}")
        if not (0 <= self.token_dropout < 1):
            raise MitigationError(f"token dropout must be in [0, 1), got {self.token_dropout}")
        if not isinstance(self.score_augmentations, int) or self.score_augmentations < 1:
            raise MitigationError(f"score augmentations must be >= 1, got {self.score_augmentations}")

    def hot_augment(self):
        from multimem.model import augment

        j = self.hot_jitter
        return augment.AugmentConfig(crop_scale=(self.hot_crop_min, 1.0), brightness=j, contrast=j, saturation=j)



@register
class Regroup(Strategy):
    name = "regroup"
    summary = "retrain f and g; every K epochs the most memorized samples get their own batches"
    Params = RegroupParams
    swept = "top"
    retrains = False  # retrained through stages(): the references first, then regrouped training

    def tail(self, params: RegroupParams) -> str:
        return f"regroup-k{params.every}-top{params.top:g}" + changed_settings(params, skip=("every", "top"))

    def check_parent(self, manifest: dict, cfg, params: RegroupParams) -> None:
        if params.every >= cfg.train.epochs:
            raise MitigationError(f"regroup every {params.every} epochs never rescores: the parent trains "
                                  f"{cfg.train.epochs} epochs; use --every below that")

    def stages(self, parent: Run, params: RegroupParams) -> dict:
        return regroup_stages(params)

    def cost_seconds(self, child_timings: dict, extra: dict) -> float:
        return (extra.get("references") or 0) + super().cost_seconds(child_timings, extra)


def regroup_stages(params: RegroupParams):
    """Stage functions for train_f and train_g: K-fold references first (once), then regrouped training."""
    from multimem.engine.train import Regrouping
    from multimem.mitigation.kfold import KFold, ReferenceScorer, reference_seconds, train_references
    from multimem.pipeline.training import train_stage

    def stage_for(tag: str):
        def stage(run: Run, cfg, data: PairData, tok) -> None:
            snapshots = tuple(range(params.every, cfg.train.epochs, params.every))
            kfold = KFold(data, params.folds, params.fold_seed)
            train_references(run, cfg, data, tok, kfold, max(snapshots), snapshots)
            mcfg = dataclasses.replace(cfg.metric, augmentations=params.score_augmentations)
            scorer = ReferenceScorer(run, cfg, data, kfold, mcfg)
            regroup = Regrouping(every=params.every, score=scorer, top=params.top, hot_augment=params.hot_augment(),
                                 token_dropout=params.token_dropout)
            train_stage(run, cfg, data, tok, tag, regroup=regroup)
            ids = data.ids
            hot = pd.DataFrame([{"epoch": e["epoch"], "row": r, "id": ids[r], "subset": data.subset[r],
                                 "injected": bool(data.injected[r])} for e in regroup.log for r in e["rows"]])
            atomic_parquet(hot, run.files.regrouped(tag))  # who was grouped, when
            log = [{"epoch": e["epoch"], "n_hot": e["n_hot"], "seconds": round(e["seconds"], 2),
                    "hot_injected": int(data.injected[e["rows"]].sum()),
                    "hot_candidates": int((data.subset[e["rows"]] == CANDIDATE).sum())} for e in regroup.log]
            m = run.info().mitigation
            cost = dict(m.get("cost_seconds") or {})
            cost["references"] = round(reference_seconds(run, params.folds), 2)
            cost[f"scoring_{tag}"] = round(sum(e["seconds"] for e in log), 2)
            cost[f"train_{tag}"] = run.info().timings.get(f"train_{tag}")
            run.update(mitigation={"regroup_log": {**(m.get("regroup_log") or {}), tag: log}, "cost_seconds": cost,
                                   "reference_rows": [int(len(kfold.train_rows(j))) for j in range(kfold.k)]})

        return stage

    return {"train_f": stage_for("f"), "train_g": stage_for("g")}


