"""Post-training removal (METHOD.md 4): rank f's training samples, remove the top n, fine-tune f on the rest
(g is the parent's, unchanged), re-score. Rankings: multimem (the parent's scores: only S_C has them), cosine (f's
image-text cosine, any training sample), random, multimem-kfold (K reference models give every training sample a
score; our extension), ids (a list of the user's, e.g. tagged in the dashboard)."""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from multimem.data.splits import CANDIDATE, SHARED, TRAIN_F
from multimem.errors import MitigationError
from multimem.mitigation.base import Strategy, check_folds, fold_seed_setting, folds_setting, register, setting
from multimem.store.atomic import atomic_parquet
from multimem.store.runs import Run
from multimem.store.manifest import Manifest

if TYPE_CHECKING:  # torch: imported where the training runs
    from multimem.data.dataset import PairData

RANKINGS = ("multimem", "cosine", "random", "multimem-kfold", "ids")
POOLS = ("candidate", "train")


@dataclass
class RemovalParams:
    n: int | None = setting(None, "int", "N: samples removed", "number of top-ranked training samples removed "
                            "before fine-tuning f (100 unless --ranking ids: the list's length; 0 = fine-tune only, "
                            "the control)", main=True)
    ranking: str = setting("multimem", "choice", "Ranking", "how samples are ranked: multimem (the parent's scores, "
                           "S_C only), cosine (f's image-text cosine), random, multimem-kfold (K reference models "
                           "score every training sample), or ids (the order of --ids FILE)", choices=RANKINGS, main=True)
    pool: str = setting("candidate", "choice", "Pool", "removable samples: candidate (S_C, the ones with MultiMem "
                        "scores) or train (S_S and S_C; needs --ranking cosine, random or multimem-kfold)",
                        choices=POOLS, main=True)
    finetune_epochs: int = setting(5, "int", "Fine-tune epochs", "epochs of fine-tuning f on the remaining samples",
                                   main=True)
    finetune_lr_scale: float = setting(0.1, "float", "Fine-tune learning-rate scale", "fine-tuning peak learning "
                                       "rate as a multiple of the parent's (warm-up + cosine)")
    ranking_seed: int = setting(0, "int", "Random ranking seed", "seed of the random ranking")
    folds: int = folds_setting()  # K for the multimem-kfold ranking
    fold_seed: int = fold_seed_setting()
    ids: str | None = setting(None, "str", "Ids file (ranking ids)", "with --ranking ids, a file of sample ids in "
                              "ranking order: one id per line, or a CSV/Parquet file with an 'id' column (a dashboard "
                              "list: RUN/lists/NAME.json); --n defaults to the number of ids")

    def __post_init__(self) -> None:
        self.ids = str(Path(self.ids).resolve()) if self.ids else None  # resumable from another folder
        if self.n is None:
            self.n = len(self.id_list()) if self.ranking == "ids" and self.ids else 100

    def id_list(self) -> list[str]:
        from multimem.store.lists import ListError, read_ids

        try:
            return read_ids(self.ids)
        except ListError as exc:
            raise MitigationError(f"--ids: {exc}") from None

    def check(self) -> None:
        if self.ranking == "ids" and not self.ids:
            raise MitigationError("--ranking ids needs --ids FILE (sample ids in ranking order)")
        if self.ids and self.ranking != "ids":
            raise MitigationError(f"--ids applies to --ranking ids only, not {self.ranking}")
        if self.ranking == "ids" and isinstance(self.n, int) and self.n > len(self.id_list()):
            raise MitigationError(f"cannot remove {self.n} samples: {self.ids} lists {len(self.id_list())} ids")
        if self.ranking not in RANKINGS:
            raise MitigationError(f"unknown ranking {self.ranking!r}: use one of {', '.join(RANKINGS)}")
        if self.pool not in POOLS:
            raise MitigationError(f"unknown pool {self.pool!r}: use candidate (S_C) or train (S_S and S_C)")
        if self.ranking == "multimem" and self.pool != "candidate":
            raise MitigationError(
                "a baseline run has MultiMem scores only for S_C (g saw every S_S sample); rank the whole training "
                "set with --ranking multimem-kfold, cosine or random, or use --pool candidate"
            )
        if not isinstance(self.n, int) or self.n < 0:
            raise MitigationError(f"removal n must be a whole number >= 0, got {self.n}")
        if not isinstance(self.finetune_epochs, int) or self.finetune_epochs < 1:
            raise MitigationError(f"fine-tuning epochs must be >= 1, got {self.finetune_epochs}")
        if not (0 < self.finetune_lr_scale <= 10):
            raise MitigationError(f"fine-tuning learning-rate scale must be in (0, 10], got {self.finetune_lr_scale}")
        check_folds(self.folds)



@register
class Removal(Strategy):
    name = "removal"
    summary = "remove the top-N ranked training samples and fine-tune f on the rest"
    Params = RemovalParams
    swept = "n"
    retrains = False
    needs_scores = True
    fixed_replicas = True

    def normalise(self, params: RemovalParams) -> RemovalParams:
        if params.n == 0:  # fine-tune only: the ranking plays no part
            return dataclasses.replace(params, ranking="none", pool="candidate")
        return params

    def tail(self, params: RemovalParams) -> str:
        d = RemovalParams()
        tail = "remove-0" if params.n == 0 else f"remove-{params.ranking}-{params.n}"
        if params.n and params.pool != d.pool:
            tail += f"-{params.pool}"
        if params.finetune_epochs != d.finetune_epochs:
            tail += f"-ft{params.finetune_epochs}"
        if params.finetune_lr_scale != d.finetune_lr_scale:
            tail += f"-lr{params.finetune_lr_scale:g}"
        if params.ranking == "random" and params.ranking_seed != d.ranking_seed:
            tail += f"-seed{params.ranking_seed}"
        if params.ranking == "multimem-kfold" and (params.folds, params.fold_seed) != (d.folds, d.fold_seed):
            tail += f"-k{params.folds}s{params.fold_seed}"
        return tail

    def check_parent(self, manifest: dict, cfg, params: RemovalParams) -> None:
        counts = Manifest(manifest).split_sizes
        pool = counts.get(CANDIDATE, 0) + (counts.get(SHARED, 0) if params.pool == "train" else 0)
        if params.n > pool:
            raise MitigationError(f"cannot remove {params.n} samples: the {params.pool} pool of "
                                  f"{manifest.get('name')!r} holds {pool}")

    def stages(self, parent: Run, params: RemovalParams) -> dict:
        return {"train_f": removal_train_f(parent, params), "train_g": copy_parent_g(parent)}

    def series(self, params: RemovalParams) -> str:
        return "fine-tune only (n = 0)" if params.n == 0 else self.name

    def cost_seconds(self, child_timings: dict, extra: dict) -> float:
        return (extra.get("ranking") or 0) + (extra.get("references") or 0) + (extra.get("finetune_f") or 0)


def rank_pool(parent: Run, run: Run, cfg, data: PairData, tok, params: RemovalParams) -> pd.DataFrame:
    """The removable training samples ranked most-memorized first: id, row, subset, score, rank, injected."""
    samples = parent.samples()
    ids = data.ids
    if list(samples["id"]) != ids:
        raise MitigationError(f"run {run.name!r} does not hold the same samples as its parent {parent.name!r}")
    subsets = (CANDIDATE,) if params.pool == "candidate" else TRAIN_F
    rows = data.rows(*subsets)
    if params.ranking == "multimem":
        s = parent.scores().set_index("id")["multimem_raw"]
        score = s.reindex([ids[r] for r in rows]).to_numpy(float)
        if np.isnan(score).any():
            raise MitigationError(f"parent run {parent.name!r} has no MultiMem score for some S_C samples; rescore it")
    elif params.ranking == "cosine":  # f's image-text cosine of the clean views (the parent's saved embeddings)
        img = np.load(parent.files.embedding("f", "image"))[rows]
        txt = np.load(parent.files.embedding("f", "text"))[rows]
        score = (img * txt).sum(1)
    elif params.ranking == "random":
        score = np.random.default_rng(params.ranking_seed).permutation(len(rows)).astype(float)
    elif params.ranking == "ids":  # the file's order is the ranking; every id must be a removable sample
        listed = params.id_list()
        where = {i: r for r, i in enumerate(ids)}
        pool = set(int(r) for r in rows)
        for i in listed:
            if i not in where:
                raise MitigationError(f"{params.ids}: unknown id {i!r}: not a sample of run {parent.name!r}")
            if where[i] not in pool:
                raise MitigationError(f"{params.ids}: id {i!r} is in {data.subset[where[i]]}, not in the "
                                      f"{params.pool} pool f trained on" + (" (use --pool train for S_S samples)"
                                                                             if data.subset[where[i]] == SHARED else ""))
        position = {where[i]: k for k, i in enumerate(listed)}
        score = np.array([float(len(listed) - position[r]) if r in position else -np.inf for r in rows])
    elif params.ranking == "multimem-kfold":
        from multimem.mitigation.kfold import KFold, ReferenceScorer, train_references
        from multimem.model import factory

        kfold = KFold(data, params.folds, params.fold_seed)
        train_references(run, cfg, data, tok, kfold, cfg.train.epochs, ())
        f, _ = factory.load_model(parent.files.checkpoint("f"), cfg.model)
        score = ReferenceScorer(run, cfg, data, kfold, cfg.metric)(cfg.train.epochs, f, rows)
    else:  # n = 0: nothing is removed
        score = np.zeros(len(rows))
    table = pd.DataFrame({"id": [ids[r] for r in rows], "row": rows, "subset": data.subset[rows],
                          "score": score, "injected": data.injected[rows]})
    table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def removal_train_f(parent: Run, params: RemovalParams):
    """Stage function: rank, remove the top n from f's training rows, fine-tune the parent's f on the rest (each
    replica of f from the parent's replica with the same index)."""
    from multimem.engine.train import train
    from multimem.mitigation.kfold import reference_seconds
    from multimem.model import factory
    from multimem.pipeline.data import progress_callback

    def stage(run: Run, cfg, data: PairData, tok) -> None:
        t0 = time.time()
        ranking_path = run.files.ranking
        if ranking_path.exists():
            ranking = pd.read_parquet(ranking_path)
        else:
            refs_before = reference_seconds(run, params.folds)
            ranking = rank_pool(parent, run, cfg, data, tok, params)
            refs = reference_seconds(run, params.folds) if params.ranking == "multimem-kfold" else 0.0
            # the references' training is counted on its own (once, also when it was resumed)
            spent = time.time() - t0 - (refs - refs_before)
            atomic_parquet(ranking, ranking_path)
            run.update(mitigation={"cost_seconds": {"ranking": round(spent, 2), "references": round(refs, 2)}})
        removed = ranking.head(params.n)
        rows = np.setdiff1d(data.rows(*TRAIN_F), removed["row"].to_numpy())
        np.save(run.files.train_rows_f, rows)  # what the fine-tuning trained on
        ft = dataclasses.replace(cfg.train, epochs=params.finetune_epochs, lr=cfg.train.lr * params.finetune_lr_scale)
        old = parent.history()
        old_replica = old["replica"] if "replica" in old else pd.Series(0, index=old.index)
        t_ft = 0.0
        for k in range(cfg.replicas):
            if run.files.checkpoint("f", k).exists():
                continue  # fine-tuned before the stage was interrupted
            init = factory.load_checkpoint(parent.files.checkpoint("f", k))["state_dict"]
            settings = dataclasses.replace(ft, seed=ft.seed + k)
            work = run.files.work_dir("f", k)
            t1 = time.time()
            model, history = train(data, rows, cfg.model, tok, settings, work, desc="fine-tune f",
                                   on_step=progress_callback(run, "train_f"), init_state=init)
            t_ft += time.time() - t1
            factory.save_checkpoint(run.files.checkpoint("f", k), model, cfg.model, tok,
                                   epoch=cfg.train.epochs + ft.epochs, train_config=settings.to_dict(),
                                   fine_tuned_from=parent.name)
            parent_f = old[(old["model"] == "f") & (old_replica == k)].assign(replica=k)
            steps = int(parent_f["step"].max()) if len(parent_f) else 0
            ft_hist = pd.DataFrame(history).assign(model="f", replica=k, epoch=lambda d: d["epoch"] + cfg.train.epochs,
                                                   step=lambda d: d["step"] + steps)
            hist = run.history()
            mine = (hist["model"] == "f") & ((hist["replica"] if "replica" in hist else 0) == k)
            atomic_parquet(pd.concat([hist[~mine], parent_f, ft_hist], ignore_index=True), run.files.history)
            for p in work.glob("*.pt"):
                p.unlink()
        cost = dict(run.info().mitigation.get("cost_seconds") or {})
        run.update(mitigation={
            "removed": int(len(removed)), "pool": params.pool, "pool_size": int(len(ranking)),
            "removed_injected": int(removed["injected"].sum()), "pool_injected": int(ranking["injected"].sum()),
            "finetune_rows": int(len(rows)), "finetune_config": ft.to_dict(),
            "cost_seconds": {**cost, "finetune_f": round(t_ft + cost.get("finetune_f", 0.0), 2)},
        })
        run.mark_stage("train_f", time.time() - t0)

    return stage


def copy_parent_g(parent: Run):
    """Stage function: g is the parent's (removal changes f only), every replica; loss history copied."""

    def stage(run: Run, cfg, data, tok) -> None:
        for k in range(cfg.replicas):
            shutil.copy2(parent.files.checkpoint("g", k), run.files.checkpoint("g", k))
        old, hist = parent.history(), run.history()
        atomic_parquet(pd.concat([hist[hist["model"] != "g"], old[old["model"] == "g"]], ignore_index=True),
                       run.files.history)
        run.mark_stage("train_g", 0.0)

    return stage


