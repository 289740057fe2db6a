"""The data stage of a run: read and split the source, record it (manifest, samples.parquet), fit or reload
the run's tokenizer; and the progress callback every stage reports through."""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

from multimem.data.dataset import PairData, build, fingerprint
from multimem.data.sources import DataError, open_source
from multimem.data.sources.base import skipped_summary
from multimem.data.splits import EXTRA, TRAIN_F, TRAIN_G
from multimem.model import factory
from multimem.pipeline.config import RunConfig
from multimem.store.atomic import atomic_parquet
from multimem.store.manifest import Manifest
from multimem.store.runs import Run, RunError


def read_data(run: Run, cfg: RunConfig) -> tuple[PairData, Any, str]:
    """Decode and split the data, and check that a run made before holds the same data; writes nothing."""
    source = open_source(cfg.source)
    data = build(source, cfg.split, cfg.split_seed, cfg.inject_fraction, cfg.inject_seed, factory.store_size(cfg.model),
                 cfg.workers, stream=cfg.stream)
    if len(data) == 0:
        raise DataError(f"dataset {cfg.source}: no usable samples ({len(source.skipped)} skipped)")
    fp = fingerprint(data.pairs)
    old = run.info().dataset.get("fingerprint") if run.exists() else None
    if old and old != fp:
        raise RunError(f"run {run.name!r} was made from other data (fingerprint {old}, now {fp}); use a new run name")
    return data, source, fp


def prepare(run: Run, cfg: RunConfig) -> tuple[PairData, Any]:
    """Decode and split the data (read_data) and record it in the run: manifest and samples.parquet."""
    data, source, fp = read_data(run, cfg)
    counts = {s: int((data.subset == s).sum()) for s in ("shared", "candidate", "independent", "extra")}
    run.update(
        dataset={
            "source": source.spec(),
            "fingerprint": fp,
            "n_samples": len(data),
            "n_injected": int(data.injected.sum()),
            "inject_fraction": cfg.inject_fraction,
            "skipped": skipped_summary(source.skipped),
            "attribution": getattr(__import__(type(source).__module__, fromlist=["x"]), "ATTRIBUTION", None),
        },
        split={"sizes": counts, "seed": cfg.split_seed, "requested": cfg.split.to_dict()},
    )
    if not run.files.samples.exists():
        atomic_parquet(data.table(), run.files.samples)
    return data, source


def tokenizer_for(run: Run, cfg: RunConfig, data: PairData):
    """One tokenizer for f and g, fitted on the training captions of both (saved in both checkpoints)."""
    from multimem.model.tokenizer import CompactTokenizer

    m = run.manifest()
    if "token_map" in Manifest(m).model:
        return CompactTokenizer(cfg.model, factory.context_length(cfg.model), m["model"]["token_map"])
    texts = [c for i in data.rows(*TRAIN_F, *TRAIN_G) for c in data.pairs[i].captions]
    tok = factory.fit_tokenizer(cfg.model, texts)
    run.update(model={"name": cfg.model, "config": factory.model_config(cfg.model), "token_map": tok.token_map})
    return tok


def unknown_tokens(data: PairData, tokenizer) -> dict[str, int]:
    """Caption tokens outside the model's vocabulary (each became the one unknown id), over every sample and over
    S_E (the held-out set and the utility figures): many of them mean the text tower cannot tell those words apart."""
    from multimem.model.tokenizer import UNK

    if tokenizer.token_map is None:  # open_clip's full vocabulary: every BPE token has its own id
        return {"all": 0, "extra": 0, "captions_with_unknown": 0}
    unk = (data.tokens == UNK).sum(1)
    extra = torch.zeros(len(unk), dtype=torch.bool)
    for i in data.rows(EXTRA):
        start, count = int(data.caption_start[i]), int(data.caption_count[i])
        extra[start : start + count] = True
    return {"all": int(unk.sum()), "extra": int(unk[extra].sum()), "captions_with_unknown": int((unk > 0).sum())}


def progress_callback(run: Run, stage: str, unit: str = "steps", **extra: Any) -> Callable[[int, int], None]:
    """A callback that records a stage's progress in the run's progress file, at most about once a second."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        t = time.time()
        if t - last[0] > 1.0 or done == total:
            last[0] = t
            run.report_progress({"stage": stage, "done": done, "total": total, "unit": unit, "time": t, **extra})

    return report
