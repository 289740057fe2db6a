"""K-fold reference models (our extension, shared by removal's multimem-kfold ranking and regroup): MultiMem for
samples that both f and g trained on, where the paper's g gives no reference. Each training sample is held out
of exactly one of K models trained with the parent's settings, and is scored against that one."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multimem import metric
from multimem.data.dataset import PairData
from multimem.data.splits import CANDIDATE, INDEPENDENT, SHARED
from multimem.errors import MitigationError
from multimem.model import factory
from multimem.store.atomic import atomic_write_json
from multimem.store.runs import Run


class KFold:
    """K reference models over U = S_S ∪ S_C ∪ S_I: the samples of U are dealt (seeded) into K folds and
    reference model j trains on U minus fold j. Every training sample of f or g is thus held out of exactly one
    reference model (its fold's) and seen by the K − 1 others; S_E is in no fold and seen by none.
    One set of references serves both f (S_S ∪ S_C) and g (S_S ∪ S_I)."""

    def __init__(self, data: PairData, k: int, seed: int = 0) -> None:
        self.k = k
        pool = data.rows(SHARED, CANDIDATE, INDEPENDENT)
        self.fold = np.full(len(data), -1, dtype=np.int64)
        perm = np.random.default_rng(seed).permutation(len(pool))
        self.fold[pool[perm]] = np.arange(len(pool)) % k

    def train_rows(self, j: int) -> np.ndarray:
        """Rows reference model j trains on: U minus fold j."""
        return np.flatnonzero((self.fold >= 0) & (self.fold != j))

    def held_out_of(self, rows: np.ndarray) -> np.ndarray:
        """For each row, the one reference model that did not see it."""
        out = self.fold[np.asarray(rows)]
        if (out < 0).any():
            raise MitigationError("K-fold scores exist only for S_S, S_C and S_I samples")
        return out


def reference_dir(run: Run, j: int) -> Path:
    return run.files.reference(j)


def train_references(run: Run, cfg, data: PairData, tok, kfold: KFold, until_epoch: int,
                     keep_epochs: tuple[int, ...]) -> float:
    """Train (or resume) the K reference models with the parent's training settings; returns seconds spent now."""
    from multimem.pipeline.data import progress_callback
    from multimem.engine.train import train

    spent = 0.0
    for j in range(kfold.k):
        folder = reference_dir(run, j)
        if (folder / "done.json").exists():
            continue
        rows = kfold.train_rows(j)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "rows.npy", rows)  # what this reference trained on (tests and reviewers check it)
        t0 = time.time()
        train(data, rows, cfg.model, tok, cfg.train, folder, desc=f"reference {j + 1}/{kfold.k}",
              on_step=progress_callback(run, f"reference_{j}"), until_epoch=until_epoch, keep_epochs=keep_epochs)
        seconds = time.time() - t0
        spent += seconds
        atomic_write_json(folder / "done.json", {"seconds": round(seconds, 2), "rows": int(len(rows)),
                                                 "until_epoch": until_epoch, "snapshots": list(keep_epochs)})
    return spent


def reference_seconds(run: Run, k: int) -> float:
    total = 0.0
    for j in range(k):
        p = reference_dir(run, j) / "done.json"
        if p.exists():
            total += json.loads(p.read_text())["seconds"]
    return total


@torch.no_grad()
def cmc_of(model, data: PairData, rows: np.ndarray, held: np.ndarray, mcfg) -> np.ndarray:
    """CMC(i, H) of each row under one model (METHOD.md 2), with H = `held` rows (one clean view each)."""
    from multimem.engine.score import embed_clean, iter_views

    hi, ht = embed_clean(model, data, held, mcfg.batch_size)
    h = metric.held_summary(torch.stack([hi, ht], dim=1))
    out = np.zeros(len(rows), np.float32)
    for batch in iter_views(model, data, rows, mcfg, desc="score"):
        out[batch.start : batch.start + len(batch.rows)] = metric.cmc(batch.views, h).cmc.numpy()
    return out


class ReferenceScorer:
    """MultiMem of training samples against their K-fold reference: CMC_model(i) − CMC_ref(fold(i))(i), the
    references taken at the same epoch as the model being scored (their epoch snapshots)."""

    def __init__(self, run: Run, cfg, data: PairData, kfold: KFold, mcfg) -> None:
        from multimem.engine.score import heldout_rows

        self.run, self.cfg, self.data, self.kfold, self.mcfg = run, cfg, data, kfold, mcfg
        self.held = heldout_rows(data, mcfg)
        self._cache: dict[tuple[int, int], Any] = {}

    def reference(self, j: int, epoch: int):
        key = (j, epoch)
        if key not in self._cache:
            self._cache = {}  # one epoch's references in memory at a time
            path = reference_dir(self.run, j) / f"epoch_{epoch}.pt"
            model = factory.create(self.cfg.model)
            model.load_state_dict(factory.load_checkpoint(path)["state_dict"])
            model.eval()
            self._cache[key] = model
        return self._cache[key]

    def __call__(self, epoch: int, model, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        fold = self.kfold.held_out_of(rows)
        out = cmc_of(model, self.data, rows, self.held, self.mcfg)
        for j in range(self.kfold.k):
            sel = fold == j
            if sel.any():
                out[sel] -= cmc_of(self.reference(j, epoch), self.data, rows[sel], self.held, self.mcfg)
        return out


