"""The training stages of a run: f and g, each replica (seed) resumable from its epoch checkpoints, and loading the
trained pair back."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from multimem.data.dataset import PairData
from multimem.model import factory
from multimem.pipeline.config import RunConfig
from multimem.data.splits import TRAIN_F, TRAIN_G
from multimem.pipeline.data import progress_callback, read_data, tokenizer_for
from multimem.store.atomic import atomic_parquet
from multimem.store.layout import checkpoint_name
from multimem.store.manifest import Manifest
from multimem.store.runs import Run, RunError


def write_history(run: Run, tag: str, replica: int, hist: pd.DataFrame) -> None:
    """Put one replica's training loss into history.parquet, in place of what it held for that replica."""
    old = run.history()
    old_replica = old["replica"] if "replica" in old else pd.Series(0, index=old.index)
    keep = old[(old["model"] != tag) | (old_replica != replica)]
    atomic_parquet(pd.concat([keep, hist], ignore_index=True), run.files.history)


def replica_history_path(run: Run, tag: str, replica: int) -> Path:
    return run.files.replica_history(tag, replica)


def merge_history(run: Run, tag: str, replica: int) -> None:
    path = replica_history_path(run, tag, replica)
    if path.exists():
        write_history(run, tag, replica, pd.read_parquet(path))
        path.unlink()


def train_one(run: Run, cfg: RunConfig, data: PairData, tokenizer, tag: str, replica: int,
              on_step: Callable[[int, int], None] | None = None, **train_options) -> pd.DataFrame:
    """Train replica `replica` of f (tag "f") or g with seed + replica, under that replica's lock (a job of its own
    may be training it), save its checkpoint and return its loss history; resumes from its last epoch checkpoint."""
    from multimem.engine.train import train

    settings = dataclasses.replace(cfg.train, seed=cfg.train.seed + replica)
    work = run.files.work_dir(tag, replica)
    label = tag if cfg.replicas == 1 else f"{tag} replica {replica + 1}/{cfg.replicas}"
    with run.lock(f"r{replica}"):
        model, history = train(data, data.rows(*(TRAIN_F if tag == "f" else TRAIN_G)), cfg.model, tokenizer,
                               settings, work, desc=f"train {label}", on_step=on_step, **train_options)
        factory.save_checkpoint(run.files.checkpoint(tag, replica), model, cfg.model, tokenizer,
                               epoch=cfg.train.epochs, train_config=settings.to_dict())
    for p in work.glob("*.pt"):
        p.unlink()
    return pd.DataFrame(history).assign(model=tag, replica=replica)


def train_replica(run: Run, replica: int) -> list[str]:
    """Train replica `replica` of f and of g of an existing run as a job of its own (a SLURM array task, another
    machine sharing the run folder): it writes only that replica's checkpoints and loss histories, so K such jobs
    run side by side; the next `multimem score` (or `train`) of the run takes them up. Returns the checkpoints
    written."""
    m = run.manifest()
    cfg = RunConfig.from_dict(m["config"])
    if not 0 <= replica < cfg.replicas:
        raise RunError(f"--replica must be between 0 and {cfg.replicas - 1} (run {run.name!r} has "
                       f"{cfg.replicas} replicas)")
    if "token_map" not in Manifest(m).model:
        raise RunError(f"run {run.name!r} has no split yet; make it with `multimem split --replicas {cfg.replicas}`")
    data, _, _ = read_data(run, cfg)
    tok = tokenizer_for(run, cfg, data)
    data.tokenize(tok)
    written = []
    for tag in ("f", "g"):
        if not run.files.checkpoint(tag, replica).exists():
            hist = train_one(run, cfg, data, tok, tag, replica)
            atomic_parquet(hist, replica_history_path(run, tag, replica))
            written.append(checkpoint_name(tag, replica))
    return written


def train_stage(run: Run, cfg: RunConfig, data: PairData, tokenizer, tag: str, **train_options) -> None:
    """Train f (tag "f") or g, each replica in turn (a finished replica is kept when the stage resumes);
    `train_options` go to multimem.train.train (mitigations: regroup=...)."""
    t0 = time.time()
    for k in range(cfg.replicas):
        if run.files.checkpoint(tag, k).exists():
            merge_history(run, tag, k)  # trained by a separate job (train_replica): its history joins the run's
            continue
        hist = train_one(run, cfg, data, tokenizer, tag, k, **train_options,
                         on_step=progress_callback(run, f"train_{tag}", replica=k, replicas=cfg.replicas))
        write_history(run, tag, k, hist)
        if k == 0:
            last = hist[hist["epoch"] == hist["epoch"].max()]["loss"] if len(hist) else pd.Series(dtype=float)
            run.update(training={tag: {"epochs": cfg.train.epochs,
                                       "final_epoch_loss": float(last.mean()) if len(last) else None}})
    run.mark_stage(f"train_{tag}", time.time() - t0)


def load_pair(run: Run, cfg: RunConfig):
    """The first replica of f and g (the paper's models) and the tokenizer."""
    f, tok = factory.load_model(run.files.checkpoint("f"), cfg.model)
    g, _ = factory.load_model(run.files.checkpoint("g"), cfg.model)
    return f, g, tok


def load_replicas(run: Run, cfg: RunConfig) -> tuple[list, list]:
    """Every replica of f and of g, in replica order."""
    fs, gs = [], []
    for k in range(cfg.replicas):
        fs.append(factory.load_model(run.files.checkpoint("f", k), cfg.model)[0])
        gs.append(factory.load_model(run.files.checkpoint("g", k), cfg.model)[0])
    return fs, gs
