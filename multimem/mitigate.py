"""Mitigation strategies (METHOD.md section 4) as runs derived from a baseline run.

A mitigated run is an ordinary run directory: same data source, split sizes and seed, and injection settings as
its parent, so the same samples land in the same subsets and the two scores tables share ids. Its manifest records
    lineage = {"parent": PARENT, "mitigation": {"strategy": ..., every parameter}}
and "mitigation" (what was done and what it cost); its scores carry the raw differences and the normalisation
range shared with the parent (metric.normalisation.shared_range_with_parent), never only a per-run range.

Strategies
- noise:    f and g retrained with Gaussian noise N(0, std²) on the embeddings of chosen modalities.
- captions: f and g retrained drawing each step's caption among the first k captions of each sample (k=1: one
            fixed caption; None: all of them, the default training).
- removal:  rank f's training samples, remove the top n, fine-tune f on the rest (g is the parent's, unchanged),
            re-score. Rankings: multimem (the parent's scores: only S_C has them), cosine (f's image-text cosine,
            any training sample), random, multimem-kfold (K reference models give every training sample a score).
- regroup:  f and g retrained; every `every` epochs the training samples are scored against K-fold reference
            models, the top `top` share go into their own mini-batches with a targeted augmentation.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimem import augment, metric, models, summary
from multimem.atomic import atomic_parquet, atomic_write_json
from multimem.dataset import PairData
from multimem.runs import COMPLETE, Run, RunError, check_name
from multimem.splits import CANDIDATE, INDEPENDENT, SHARED, TRAIN_F
from multimem.train import NOISE_SPACES

STRATEGIES = ("noise", "captions", "removal", "regroup")
RANKINGS = ("multimem", "cosine", "random", "multimem-kfold", "ids")
POOLS = ("candidate", "train")
MODALITIES = ("image", "text")


class MitigationError(RunError):
    pass


# ------------------------------------------------------------------------------------------------ parameters

@dataclass
class NoiseParams:
    std: float = 0.1  # σ of N(0, σ²) added to each coordinate of the chosen modalities' embeddings
    modalities: tuple[str, ...] = MODALITIES  # image, text, or both (the paper's best: both, σ = 0.1)
    # raw: on the projection outputs before l2-normalisation (their norm is ~9-10 for mm-tiny, as for CLIP, so
    # σ = 0.1 is a mild perturbation, the paper's regime); normalised: on the unit vectors the loss sees, where
    # the noise's norm σ√d (0.8 at d = 64, 2.3 at CLIP's d = 512) rivals or exceeds the embedding's own
    noise_space: str = "raw"

    def check(self) -> None:
        if self.noise_space not in NOISE_SPACES:
            raise MitigationError(f"noise space must be raw or normalised, got {self.noise_space!r}")
        if not (isinstance(self.std, (int, float)) and math.isfinite(self.std) and 0 < self.std <= 10):
            raise MitigationError(f"noise std must be a number in (0, 10], got {self.std}")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities:
            raise MitigationError(f"noise modalities must be image, text or both, got {','.join(self.modalities) or 'none'}")


@dataclass
class CaptionParams:
    captions_per_image: int | None = None  # draw each step's caption among the first k; None: all captions

    def check(self) -> None:
        k = self.captions_per_image
        if k is not None and (not isinstance(k, int) or k < 1):
            raise MitigationError(f"captions per image must be a whole number >= 1 or 'all', got {k}")


@dataclass
class RemovalParams:
    n: int | None = None  # samples removed (default 100, the paper's best: 100-200; with --ranking ids the list's
    # length); 0 = fine-tune only, the control
    ranking: str = "multimem"  # multimem | cosine | random | multimem-kfold
    pool: str = "candidate"  # which training samples can be removed: candidate (S_C) or train (S_S ∪ S_C)
    finetune_epochs: int = 5  # epochs of fine-tuning f on the remaining training samples
    finetune_lr_scale: float = 0.1  # fine-tuning peak learning rate = this × the parent's (warm-up + cosine)
    ranking_seed: int = 0  # the random ranking's seed
    folds: int = 4  # K for the multimem-kfold ranking
    fold_seed: int = 0
    ids: str | None = None  # --ranking ids: a file of sample ids in ranking order (multimem.curation.read_ids)

    def __post_init__(self) -> None:
        self.ids = str(Path(self.ids).resolve()) if self.ids else None  # resumable from another folder
        if self.n is None:
            self.n = len(self.id_list()) if self.ranking == "ids" and self.ids else 100

    def id_list(self) -> list[str]:
        from multimem.curation import ListError, read_ids

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
        if not isinstance(self.folds, int) or self.folds < 2:
            raise MitigationError(f"folds must be a whole number >= 2, got {self.folds}")


@dataclass
class RegroupParams:
    every: int = 10  # rescore every k epochs (the paper: 10)
    top: float = 0.05  # share of training samples grouped (the paper: the top 5%)
    folds: int = 4  # K reference models; each training sample is held out of exactly one
    fold_seed: int = 0
    hot_crop_min: float = 0.25  # targeted augmentation: smallest crop area (training default 0.5)
    hot_jitter: float = 0.5  # targeted augmentation: brightness/contrast/saturation jitter (training default 0.3)
    token_dropout: float = 0.1  # targeted augmentation: probability of dropping each caption word
    score_augmentations: int = 2  # A for the in-training scores (the run's own scores keep the parent's A)

    def check(self) -> None:
        if not isinstance(self.every, int) or self.every < 1:
            raise MitigationError(f"regroup every must be a whole number of epochs >= 1, got {self.every}")
        if not (0 < self.top < 1):
            raise MitigationError(f"regroup top must be a share in (0, 1), e.g. 0.05; got {self.top}")
        if not isinstance(self.folds, int) or self.folds < 2:
            raise MitigationError(f"folds must be a whole number >= 2, got {self.folds}")
        if not (0 < self.hot_crop_min <= 1):
            raise MitigationError(f"hot crop min must be in (0, 1], got {self.hot_crop_min}")
        if not (0 <= self.hot_jitter < 1):
            raise MitigationError(f"hot jitter must be in [0, 1), got {self.hot_jitter}")
        if not (0 <= self.token_dropout < 1):
            raise MitigationError(f"token dropout must be in [0, 1), got {self.token_dropout}")
        if not isinstance(self.score_augmentations, int) or self.score_augmentations < 1:
            raise MitigationError(f"score augmentations must be >= 1, got {self.score_augmentations}")

    def hot_augment(self) -> augment.AugmentConfig:
        j = self.hot_jitter
        return augment.AugmentConfig(crop_scale=(self.hot_crop_min, 1.0), brightness=j, contrast=j, saturation=j)


PARAMS = {"noise": NoiseParams, "captions": CaptionParams, "removal": RemovalParams, "regroup": RegroupParams}
SWEPT = {"noise": "std", "captions": "captions_per_image", "removal": "n", "regroup": "top"}


def make_params(strategy: str, **values: Any):
    """The strategy's parameters (documented defaults for what is not given), checked."""
    if strategy not in PARAMS:
        raise MitigationError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    cls = PARAMS[strategy]
    known = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(k for k, v in values.items() if v is not None and k not in known)
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise MitigationError(f"{flags} do(es) not apply to --strategy {strategy}")
    values = {k: v for k, v in values.items() if k in known and v is not None}
    if "modalities" in values:
        values["modalities"] = tuple(sorted(set(values["modalities"])))
    params = cls(**values)
    params.check()
    if strategy == "removal" and params.n == 0:  # fine-tune only: the ranking plays no part
        params = dataclasses.replace(params, ranking="none", pool="candidate")
    return params


def params_dict(strategy: str, params) -> dict:
    """The mitigation as recorded in a derived run's lineage (and compared when it resumes)."""
    d = {"strategy": strategy, **json.loads(json.dumps(asdict(params)))}
    if d.get("ids", 0) is None:  # a setting added later: left out when unused, so older runs' lineage still matches
        del d["ids"]
    return d


def child_name(parent: str, strategy: str, params) -> str:
    """A readable default name for the derived run, e.g. base.noise-all-0.1, base.remove-multimem-100."""
    if strategy == "noise":
        mods = "all" if set(params.modalities) == set(MODALITIES) else "-".join(params.modalities)
        tail = f"noise-{mods}-{params.std:g}" + ("" if params.noise_space == "raw" else f"-{params.noise_space}")
    elif strategy == "captions":
        tail = f"captions-{params.captions_per_image or 'all'}"
    elif strategy == "removal":
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
    else:
        d = RegroupParams()
        tail = f"regroup-k{params.every}-top{params.top:g}"
        changed = [f"{f.name}={getattr(params, f.name):g}" for f in dataclasses.fields(d)
                   if f.name not in ("every", "top") and getattr(params, f.name) != getattr(d, f.name)]
        if changed:
            tail += "-" + "-".join(c.replace("_", "").replace("=", "") for c in changed)
    name = f"{parent}.{tail}"
    if len(name) > 100:
        raise MitigationError(f"the derived run's name {name!r} is too long; give one with --name")
    return name


# ------------------------------------------------------------------------------------------------ parent

def open_parent(root: Path | str, name: str) -> tuple[Run, dict]:
    try:
        parent = Run(root, name)
    except RunError as exc:
        raise MitigationError(f"parent run: {exc}") from None
    if not parent.exists():
        raise MitigationError(f"unknown parent run {name!r}: no run of that name in {root} (see `multimem runs`)")
    m = parent.manifest()
    if "config" not in m:
        raise MitigationError(f"parent run {name!r} has no saved settings; it cannot be mitigated")
    return parent, m


def _need_complete(parent: Run, m: dict, why: str) -> None:
    if parent.status() != COMPLETE or not parent.path("scores.parquet").exists():
        raise MitigationError(f"parent run {parent.name!r} is {parent.status()}; {why} needs a complete (scored) run")


def child_config(cfg, strategy: str, params):
    """The parent's RunConfig with the strategy's training change (removal and regroup keep it as it is)."""
    if strategy == "noise":
        noise = {m: float(params.std) for m in params.modalities}
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, feature_noise=noise,
                                                                  feature_noise_space=params.noise_space))
    if strategy == "captions":
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, captions_per_image=params.captions_per_image))
    return cfg


def same_as_parent(cfg, strategy: str, params) -> bool:
    """True when the strategy with these values trains exactly as the parent did (nothing to derive)."""
    if strategy in ("noise", "captions"):
        return child_config(cfg, strategy, params).to_dict() == cfg.to_dict()
    return False


# ------------------------------------------------------------------------------------------------ K-fold

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
    return run.path("mitigation", "refs", f"ref{j}")


def train_references(run: Run, cfg, data: PairData, tok, kfold: KFold, until_epoch: int,
                     keep_epochs: tuple[int, ...]) -> float:
    """Train (or resume) the K reference models with the parent's training settings; returns seconds spent now."""
    from multimem.pipeline import _progress
    from multimem.train import train

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
              on_step=_progress(run, f"reference_{j}"), until_epoch=until_epoch, keep_epochs=keep_epochs)
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
    from multimem.score import embed_clean, iter_views

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
        from multimem.score import heldout_rows

        self.run, self.cfg, self.data, self.kfold, self.mcfg = run, cfg, data, kfold, mcfg
        self.held = heldout_rows(data, mcfg)
        self._cache: dict[tuple[int, int], Any] = {}

    def reference(self, j: int, epoch: int):
        key = (j, epoch)
        if key not in self._cache:
            self._cache = {}  # one epoch's references in memory at a time
            path = reference_dir(self.run, j) / f"epoch_{epoch}.pt"
            model = models.create(self.cfg.model)
            model.load_state_dict(models.load_checkpoint(path)["state_dict"])
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


# ------------------------------------------------------------------------------------------------ removal

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
        img = np.load(parent.path("embeddings", "f_image.npy"))[rows]
        txt = np.load(parent.path("embeddings", "f_text.npy"))[rows]
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
        kfold = KFold(data, params.folds, params.fold_seed)
        train_references(run, cfg, data, tok, kfold, cfg.train.epochs, ())
        f, _ = models.load_model(parent.path("checkpoints", "f.pt"), cfg.model)
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
    from multimem.pipeline import _progress, checkpoint_name
    from multimem.train import train

    def stage(run: Run, cfg, data: PairData, tok) -> None:
        t0 = time.time()
        ranking_path = run.path("mitigation", "ranking.parquet")
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
        np.save(run.path("mitigation", "train_rows_f.npy"), rows)  # what the fine-tuning trained on
        ft = dataclasses.replace(cfg.train, epochs=params.finetune_epochs, lr=cfg.train.lr * params.finetune_lr_scale)
        old = parent.history()
        old_replica = old["replica"] if "replica" in old else pd.Series(0, index=old.index)
        t_ft = 0.0
        for k in range(cfg.replicas):
            name = checkpoint_name("f", k)
            if run.path("checkpoints", name).exists():
                continue  # fine-tuned before the stage was interrupted
            init = models.load_checkpoint(parent.path("checkpoints", name))["state_dict"]
            settings = dataclasses.replace(ft, seed=ft.seed + k)
            work = run.path("checkpoints", "work_f" if k == 0 else f"work_f.r{k}")
            t1 = time.time()
            model, history = train(data, rows, cfg.model, tok, settings, work, desc="fine-tune f",
                                   on_step=_progress(run, "train_f"), init_state=init)
            t_ft += time.time() - t1
            models.save_checkpoint(run.path("checkpoints", name), model, cfg.model, tok,
                                   epoch=cfg.train.epochs + ft.epochs, train_config=settings.to_dict(),
                                   fine_tuned_from=parent.name)
            parent_f = old[(old["model"] == "f") & (old_replica == k)].assign(replica=k)
            steps = int(parent_f["step"].max()) if len(parent_f) else 0
            ft_hist = pd.DataFrame(history).assign(model="f", replica=k, epoch=lambda d: d["epoch"] + cfg.train.epochs,
                                                   step=lambda d: d["step"] + steps)
            hist = run.history()
            mine = (hist["model"] == "f") & ((hist["replica"] if "replica" in hist else 0) == k)
            atomic_parquet(pd.concat([hist[~mine], parent_f, ft_hist], ignore_index=True), run.path("history.parquet"))
            for p in work.glob("*.pt"):
                p.unlink()
        cost = dict((run.manifest().get("mitigation") or {}).get("cost_seconds") or {})
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
    from multimem.pipeline import checkpoint_name

    def stage(run: Run, cfg, data, tok) -> None:
        for k in range(cfg.replicas):
            shutil.copy2(parent.path("checkpoints", checkpoint_name("g", k)), run.path("checkpoints", checkpoint_name("g", k)))
        old, hist = parent.history(), run.history()
        atomic_parquet(pd.concat([hist[hist["model"] != "g"], old[old["model"] == "g"]], ignore_index=True),
                       run.path("history.parquet"))
        run.mark_stage("train_g", 0.0)

    return stage


# ------------------------------------------------------------------------------------------------ regroup

def regroup_stages(params: RegroupParams):
    """Stage functions for train_f and train_g: K-fold references first (once), then regrouped training."""
    from multimem.pipeline import train_stage
    from multimem.train import Regrouping

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
            atomic_parquet(hot, run.path("mitigation", f"hot_{tag}.parquet"))  # who was grouped, when
            log = [{"epoch": e["epoch"], "n_hot": e["n_hot"], "seconds": round(e["seconds"], 2),
                    "hot_injected": int(data.injected[e["rows"]].sum()),
                    "hot_candidates": int((data.subset[e["rows"]] == CANDIDATE).sum())} for e in regroup.log]
            m = run.manifest().get("mitigation") or {}
            cost = dict(m.get("cost_seconds") or {})
            cost["references"] = round(reference_seconds(run, params.folds), 2)
            cost[f"scoring_{tag}"] = round(sum(e["seconds"] for e in log), 2)
            cost[f"train_{tag}"] = (run.manifest().get("timings") or {}).get(f"train_{tag}")
            run.update(mitigation={"regroup_log": {**(m.get("regroup_log") or {}), tag: log}, "cost_seconds": cost,
                                   "reference_rows": [int(len(kfold.train_rows(j))) for j in range(kfold.k)]})

        return stage

    return {"train_f": stage_for("f"), "train_g": stage_for("g")}


# ------------------------------------------------------------------------------------------------ comparison

def utility_row(m: dict, tag: str = "f") -> dict:
    u = (m.get("utility") or {}).get(tag) or {}
    out = {k: u.get(k) for k in ("image_to_text_R@1", "image_to_text_R@5", "image_to_text_R@10",
                                 "text_to_image_R@1", "text_to_image_R@5", "text_to_image_R@10", "zero_shot_top1")}
    if u:
        out["mean_R@5"] = (u["image_to_text_R@5"] + u["text_to_image_R@5"]) / 2
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
    removed_path = child.path("mitigation", "ranking.parquet")
    n = int(((cm.get("lineage") or {}).get("mitigation") or {}).get("n") or 0)
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
    out["injected_auc"] = {"parent": (pm.get("summary") or {}).get("injected_auc"),
                           "run": (cm.get("summary") or {}).get("injected_auc")}
    return out


def cost_of(parent_m: dict, child_m: dict, strategy: str) -> dict:
    """Wall-clock seconds of the mitigation against the parent's plain training of f and g (the run's scoring,
    evaluation and indexing, the same for every run, are left out). Wall-clock: other load on the machine counts."""
    pt = parent_m.get("timings") or {}
    ct = child_m.get("timings") or {}
    plain = (pt.get("train_f") or 0) + (pt.get("train_g") or 0)
    extra = (child_m.get("mitigation") or {}).get("cost_seconds") or {}
    if strategy == "removal":
        spent = (extra.get("ranking") or 0) + (extra.get("references") or 0) + (extra.get("finetune_f") or 0)
    elif strategy == "regroup":
        spent = (extra.get("references") or 0) + (ct.get("train_f") or 0) + (ct.get("train_g") or 0)
    else:
        spent = (ct.get("train_f") or 0) + (ct.get("train_g") or 0)
    return {"parent_training_seconds": round(plain, 2), "mitigation_seconds": round(spent, 2),
            "relative_to_parent_training": round(spent / plain, 3) if plain else None, **extra}


# ------------------------------------------------------------------------------------------------ entry point

def mitigate(root: Path | str, parent_name: str, strategy: str, params=None, name: str | None = None,
             replicas: int | None = None) -> dict:
    """Create (or resume) the mitigated run derived from `parent_name`; returns its manifest.

    `replicas`: seeds of f and g the derived run trains (default: the parent's; removal keeps the parent's)."""
    from multimem.pipeline import STAGES, RunConfig, execute

    params = params if params is not None else make_params(strategy)
    if strategy not in STRATEGIES:
        raise MitigationError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    parent, pm = open_parent(root, parent_name)
    cfg = RunConfig.from_dict(pm["config"])
    if strategy in ("removal",):
        _need_complete(parent, pm, "removal")
        counts = (pm.get("split") or {}).get("sizes") or {}
        pool = counts.get(CANDIDATE, 0) + (counts.get(SHARED, 0) if params.pool == "train" else 0)
        if params.n > pool:
            raise MitigationError(f"cannot remove {params.n} samples: the {params.pool} pool of {parent_name!r} "
                                  f"holds {pool}")
    if strategy == "regroup" and params.every >= cfg.train.epochs:
        raise MitigationError(f"regroup every {params.every} epochs never rescores: the parent trains "
                              f"{cfg.train.epochs} epochs; use --every below that")
    if strategy == "removal" and replicas not in (None, cfg.replicas):
        raise MitigationError(f"removal fine-tunes each of the parent's {cfg.replicas} replicas of f: --replicas "
                              f"cannot change that; leave it out")
    if replicas is not None and replicas < 1:
        raise MitigationError(f"--replicas must be at least 1, got {replicas}")
    if same_as_parent(cfg, strategy, params):
        raise MitigationError(f"parent run {parent_name!r} already trains that way ({params_dict(strategy, params)}); "
                              "nothing to derive")
    if replicas is not None and replicas != cfg.replicas:
        name = name or f"{child_name(parent_name, strategy, params)}.r{replicas}"
    name = check_name(name or child_name(parent_name, strategy, params))
    if name == parent_name:
        raise MitigationError("the derived run needs a name other than its parent's")
    lineage = {"parent": parent_name, "mitigation": params_dict(strategy, params)}
    run = Run(root, name)
    if run.exists():
        old = run.manifest().get("lineage") or {}
        if old != lineage:
            raise MitigationError(f"run {name!r} exists and is not this mitigation of {parent_name!r} "
                                  f"({old.get('mitigation')}); pick another --name")
    else:
        # the parent's token map: the derived run tokenizes exactly as the parent (fine-tuning needs it)
        run.update(model=pm.get("model"), lineage=lineage)
    cfg_child = child_config(cfg, strategy, params)
    if replicas is not None:
        cfg_child = dataclasses.replace(cfg_child, replicas=replicas)
    stage_fns = {}
    if strategy == "removal":
        stage_fns = {"train_f": removal_train_f(parent, params), "train_g": copy_parent_g(parent)}
    elif strategy == "regroup":
        stage_fns = regroup_stages(params)
    execute(run, cfg_child, STAGES, lineage=lineage, stage_fns=stage_fns)
    m = run.manifest()
    if m.get("status") == COMPLETE:
        m = run.update(mitigation={"strategy": strategy, "cost": cost_of(pm, m, strategy)},
                       comparison=compare(parent, run))
    return m
