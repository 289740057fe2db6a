"""A run end to end: source -> split -> train f, g -> score -> evaluate -> index -> run directory.

Each stage is recorded in the manifest when its files are written; running the same run again skips what is
done and resumes training from its last epoch checkpoint. The status becomes "complete" only after the last stage.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from multimem import models
from multimem import summary as run_summary
from multimem.atomic import atomic_numpy, atomic_parquet
from multimem.dataset import PairData, build, fingerprint
from multimem.runs import COMPLETE, FAILED, RUNNING, STAGES, Run, RunError
from multimem.score import MetricConfig
from multimem.sources import DataError, open_source
from multimem.sources.base import skipped_summary
from multimem.splits import EXTRA, TRAIN_F, TRAIN_G, SplitSizes
from multimem.train import TrainConfig



@dataclass
class RunConfig:
    source: dict[str, Any] = field(default_factory=lambda: {"kind": "twemoji"})
    split: SplitSizes = field(default_factory=SplitSizes)
    split_seed: int = 0
    inject_fraction: float = 0.0  # share of each training subset given another sample's captions (ground truth)
    inject_seed: int = 0
    model: str = models.DEFAULT_MODEL
    train: TrainConfig = field(default_factory=TrainConfig)
    metric: MetricConfig = field(default_factory=MetricConfig)
    prompt_template: str | None = None  # zero-shot prompt; None: the source's own
    workers: int = 4
    stream: bool = False  # decode images per batch (flat memory) instead of holding them all decoded
    # K seeds of f and K of g on the same split (METHOD.md 6): replica k trains with train.seed + k; scores average
    # the K paired differences and keep their standard error. 1 is the paper's score.
    replicas: int = 1

    def to_dict(self) -> dict:
        """JSON-shaped (tuples as lists), so it compares equal to what the manifest holds."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        return cls(
            split=SplitSizes(**d.pop("split")),
            train=TrainConfig.from_dict(d.pop("train")),
            metric=MetricConfig.from_dict(d.pop("metric")),
            **d,
        )


def versions() -> dict[str, str]:
    import faiss
    import open_clip

    import multimem

    return {
        "multimem": multimem.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def store_size(model_name: str) -> int:
    """Images are kept decoded at 1.5× the model input so that random crops are taken from real detail."""
    _, _, size = models.image_norm_from_config(model_name)
    return int(size * 3 // 2)


def read_data(run: Run, cfg: RunConfig) -> tuple[PairData, Any, str]:
    """Decode and split the data, and check that a run made before holds the same data; writes nothing."""
    source = open_source(cfg.source)
    data = build(source, cfg.split, cfg.split_seed, cfg.inject_fraction, cfg.inject_seed, store_size(cfg.model),
                 cfg.workers, stream=cfg.stream)
    if len(data) == 0:
        raise DataError(f"dataset {cfg.source}: no usable samples ({len(source.skipped)} skipped)")
    fp = fingerprint(data.pairs)
    old = (run.manifest().get("dataset") or {}).get("fingerprint") if run.exists() else None
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
    if not run.path("samples.parquet").exists():
        atomic_parquet(data.table(), run.path("samples.parquet"))
    return data, source


def _tokenizer(run: Run, cfg: RunConfig, data: PairData):
    """One tokenizer for f and g, fitted on the training captions of both (saved in both checkpoints)."""
    from multimem.tokenizer import CompactTokenizer

    m = run.manifest()
    if "token_map" in (m.get("model") or {}):
        return CompactTokenizer(cfg.model, models.context_length(cfg.model), m["model"]["token_map"])
    texts = [c for i in data.rows(*TRAIN_F, *TRAIN_G) for c in data.pairs[i].captions]
    tok = models.fit_tokenizer(cfg.model, texts)
    run.update(model={"name": cfg.model, "config": models.model_config(cfg.model), "token_map": tok.token_map})
    return tok


def unknown_tokens(data: PairData, tokenizer) -> dict[str, int]:
    """Caption tokens outside the model's vocabulary (each became the one unknown id), over every sample and over
    S_E (the held-out set and the utility figures): many of them mean the text tower cannot tell those words apart."""
    from multimem.tokenizer import UNK

    if tokenizer.token_map is None:  # open_clip's full vocabulary: every BPE token has its own id
        return {"all": 0, "extra": 0, "captions_with_unknown": 0}
    unk = (data.tokens == UNK).sum(1)
    extra = torch.zeros(len(unk), dtype=torch.bool)
    for i in data.rows(EXTRA):
        start, count = int(data.caption_start[i]), int(data.caption_count[i])
        extra[start : start + count] = True
    return {"all": int(unk.sum()), "extra": int(unk[extra].sum()), "captions_with_unknown": int((unk > 0).sum())}


def _progress(run: Run, stage: str, unit: str = "steps", **extra: Any) -> Callable[[int, int], None]:
    """A callback that records a stage's progress in the run's progress file, at most about once a second."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        t = time.time()
        if t - last[0] > 1.0 or done == total:
            last[0] = t
            run.report_progress({"stage": stage, "done": done, "total": total, "unit": unit, "time": t, **extra})

    return report


def checkpoint_name(tag: str, replica: int = 0) -> str:
    """f.pt / g.pt for the first replica (the paper's models), f.r1.pt, ... for the others."""
    return f"{tag}.pt" if replica == 0 else f"{tag}.r{replica}.pt"


def write_history(run: Run, tag: str, replica: int, hist: pd.DataFrame) -> None:
    """Put one replica's training loss into history.parquet, in place of what it held for that replica."""
    old = run.history()
    old_replica = old["replica"] if "replica" in old else pd.Series(0, index=old.index)
    keep = old[(old["model"] != tag) | (old_replica != replica)]
    atomic_parquet(pd.concat([keep, hist], ignore_index=True), run.path("history.parquet"))


def replica_history_path(run: Run, tag: str, replica: int) -> Path:
    return run.path("checkpoints", f"history.{tag}.r{replica}.parquet")


def merge_history(run: Run, tag: str, replica: int) -> None:
    path = replica_history_path(run, tag, replica)
    if path.exists():
        write_history(run, tag, replica, pd.read_parquet(path))
        path.unlink()


def train_one(run: Run, cfg: RunConfig, data: PairData, tokenizer, tag: str, replica: int,
              on_step: Callable[[int, int], None] | None = None, **train_options) -> pd.DataFrame:
    """Train replica `replica` of f (tag "f") or g with seed + replica, under that replica's lock (a job of its own
    may be training it), save its checkpoint and return its loss history; resumes from its last epoch checkpoint."""
    from multimem.train import train

    settings = dataclasses.replace(cfg.train, seed=cfg.train.seed + replica)
    work = run.path("checkpoints", f"work_{tag}" if replica == 0 else f"work_{tag}.r{replica}")
    label = tag if cfg.replicas == 1 else f"{tag} replica {replica + 1}/{cfg.replicas}"
    with run.lock(f"r{replica}"):
        model, history = train(data, data.rows(*(TRAIN_F if tag == "f" else TRAIN_G)), cfg.model, tokenizer,
                               settings, work, desc=f"train {label}", on_step=on_step, **train_options)
        models.save_checkpoint(run.path("checkpoints", checkpoint_name(tag, replica)), model, cfg.model, tokenizer,
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
    if "token_map" not in (m.get("model") or {}):
        raise RunError(f"run {run.name!r} has no split yet; make it with `multimem split --replicas {cfg.replicas}`")
    data, _, _ = read_data(run, cfg)
    tok = _tokenizer(run, cfg, data)
    data.tokenize(tok)
    written = []
    for tag in ("f", "g"):
        if not run.path("checkpoints", checkpoint_name(tag, replica)).exists():
            hist = train_one(run, cfg, data, tok, tag, replica)
            atomic_parquet(hist, replica_history_path(run, tag, replica))
            written.append(checkpoint_name(tag, replica))
    return written


def train_stage(run: Run, cfg: RunConfig, data: PairData, tokenizer, tag: str, **train_options) -> None:
    """Train f (tag "f") or g, each replica in turn (a finished replica is kept when the stage resumes);
    `train_options` go to multimem.train.train (mitigations: regroup=...)."""
    t0 = time.time()
    for k in range(cfg.replicas):
        if run.path("checkpoints", checkpoint_name(tag, k)).exists():
            merge_history(run, tag, k)  # trained by a separate job (train_replica): its history joins the run's
            continue
        hist = train_one(run, cfg, data, tokenizer, tag, k, **train_options,
                         on_step=_progress(run, f"train_{tag}", replica=k, replicas=cfg.replicas))
        write_history(run, tag, k, hist)
        if k == 0:
            last = hist[hist["epoch"] == hist["epoch"].max()]["loss"] if len(hist) else pd.Series(dtype=float)
            run.update(training={tag: {"epochs": cfg.train.epochs,
                                       "final_epoch_loss": float(last.mean()) if len(last) else None}})
    run.mark_stage(f"train_{tag}", time.time() - t0)


def load_pair(run: Run, cfg: RunConfig):
    """The first replica of f and g (the paper's models) and the tokenizer."""
    f, tok = models.load_model(run.path("checkpoints", "f.pt"), cfg.model)
    g, _ = models.load_model(run.path("checkpoints", "g.pt"), cfg.model)
    return f, g, tok


def load_replicas(run: Run, cfg: RunConfig) -> tuple[list, list]:
    """Every replica of f and of g, in replica order."""
    fs, gs = [], []
    for k in range(cfg.replicas):
        fs.append(models.load_model(run.path("checkpoints", checkpoint_name("f", k)), cfg.model)[0])
        gs.append(models.load_model(run.path("checkpoints", checkpoint_name("g", k)), cfg.model)[0])
    return fs, gs


def with_sample_columns(run: Run, table: pd.DataFrame) -> pd.DataFrame:
    """The scores table preceded by each scored row's samples.parquet columns (id, subset, captions, ...)."""
    samples = pd.read_parquet(run.path("samples.parquet")).iloc[table["row"].to_numpy()].reset_index(drop=True)
    return pd.concat([samples, table], axis=1)


def shared_range_with_parent(run: Run, table: pd.DataFrame, parent_name: str) -> dict:
    """One normalisation range for a derived run and its parent, with both runs' subset means on that scale."""
    try:
        parent = Run(run.root, parent_name)
        ps = parent.scores()
        prange = (parent.manifest().get("metric") or {}).get("normalisation", {}).get("range")
    except (RunError, OSError) as exc:
        return {"parent": parent_name, "range": None, "error": f"parent scores unavailable: {exc}"}
    r = run_summary.shared_range(ps, table)
    means = lambda t: {s: v / r for s, v in run_summary.subset_means(t, "multimem_raw").items()}
    return {"parent": parent_name, "range": r, "parent_range": prange, "mean_multimem": means(table),
            "parent_mean_multimem": means(ps)}


def score_stage(run: Run, cfg: RunConfig, data: PairData) -> None:
    """Scores of the scored samples and clean embeddings of every sample; under torchrun every rank calls it with
    the same data, each embeds its share, and rank 0 writes the run."""
    from multimem import distributed
    from multimem.embeddings import EmbeddingParts, assemble
    from multimem.score import iter_clean, score, scored_rows

    t0 = time.time()
    fs, gs = load_replicas(run, cfg)
    fs, gs = [m.to(distributed.device()) for m in fs], [m.to(distributed.device()) for m in gs]
    # scoring embeds the clean views of the scored rows; the rest are embedded here, each row once
    scored = scored_rows(data, cfg.metric)
    mine_rest = distributed.shard(np.setdiff1d(np.arange(len(data)), scored))
    parts = EmbeddingParts(run.path("embeddings"), len(data), np.concatenate([distributed.shard(scored), mine_rest]),
                           distributed.rank())
    report = _progress(run, "score", "samples") if distributed.is_main() else (lambda done, total: None)
    done = [0]

    def store(tag, rows, image, text):  # every embedded batch passes here once: the stage's progress
        parts.add(tag, rows, image, text)
        done[0] += len(rows)
        report(done[0], 2 * len(parts.rows))

    table, summary = score(fs, gs, data, cfg.metric, on_clean=store)
    for tag, model in (("f", fs[0]), ("g", gs[0])):  # embeddings and indices: the first replica
        for rows, image, text in iter_clean(model, data, mine_rest, cfg.metric.batch_size):
            store(tag, rows, image, text)
    parts.close()
    distributed.barrier()
    if table is None:  # not rank 0
        return
    assemble(run.path("embeddings"), len(data), distributed.world_size())
    table = with_sample_columns(run, table)
    table = pd.concat([table, run_summary.calibration(table)], axis=1)
    atomic_parquet(table, run.path("scores.parquet"))
    normalisation = summary["normalisation"]
    parent = (run.manifest().get("lineage") or {}).get("parent")
    if parent:  # a derived run: also the range shared with its parent, for comparing on one scale (METHOD.md 3)
        normalisation = {**normalisation, "shared_range_with_parent": shared_range_with_parent(run, table, parent)}
    run.update(metric={**cfg.metric.to_dict(), "heldout_size": summary["heldout"],  # |H| used: S_E may be smaller
                       "heldout_requested": cfg.metric.heldout_size, "n_scored": summary["n_scored"],
                       "normalisation": normalisation, "processes": summary["processes"],
                       "replicas": summary["replicas"]},
               summary=run_summary.summarise(table),
               timings={"score_forward": round(summary["forward_seconds"], 2),
                        "score_pipeline": round(summary["seconds"], 2)})
    run.mark_stage("score", time.time() - t0)


def evaluate_stage(run: Run, cfg: RunConfig, data: PairData, source) -> None:
    from multimem.evaluate import evaluate

    t0 = time.time()
    f, g, tok = load_pair(run, cfg)
    template = cfg.prompt_template or getattr(source, "prompt_template", "a photo of {label}")
    run.update(utility={"f": evaluate(f, data, tok, template), "g": evaluate(g, data, tok, template),
                        "prompt_template": template})
    run.mark_stage("evaluate", time.time() - t0)


def index_stage(run: Run, data: PairData) -> None:
    from multimem import index

    t0 = time.time()
    rows = data.rows(*TRAIN_F)
    params = index.plan(len(rows))  # exact while small, IVF above index.EXACT_MAX (docs/benchmarks.md)
    recall = {}
    for modality in ("image", "text"):
        emb = np.load(run.path("embeddings", f"f_{modality}.npy"), mmap_mode="r")[rows]
        built = index.build(emb, params)
        if not params["exact"]:  # what the approximation costs on this run's own embeddings
            recall[modality] = round(index.recall_at_k(built, emb), 4)
        index.save(built, run.path("index", f"{modality}.faiss"))
    atomic_numpy(rows, run.path("index", "rows.npy"))
    run.update(index={**params, "metric": "cosine", "vectors": int(len(rows)), "model": "f",
                      "subsets": list(TRAIN_F), "exact_max": index.EXACT_MAX,
                      "recall_at_10": recall or None})
    run.mark_stage("index", time.time() - t0)


def set_nprobe(run: Run, nprobe: int) -> dict:
    """Search an approximate index with `nprobe` lists from now on, its recall@10 measured again; the manifest's
    index entry after the change (the app reads nprobe from it). Nothing is rebuilt."""
    from multimem import index

    m = run.manifest().get("index") or {}
    if not run.stage_done("index"):
        raise RunError(f"run {run.name!r} has no index yet; run `multimem index {run.name}` first")
    if m.get("exact", True):
        raise RunError(f"run {run.name!r} has an exact index ({m.get('vectors')} vectors): nprobe does not apply")
    if not 1 <= nprobe <= m["nlist"]:
        raise RunError(f"--nprobe must be between 1 and the index's {m['nlist']} lists, got {nprobe}")
    rows = np.load(run.path("index", "rows.npy"))
    recall = {}
    for modality in ("image", "text"):
        emb = np.load(run.path("embeddings", f"f_{modality}.npy"), mmap_mode="r")[rows]
        recall[modality] = round(index.recall_at_k(index.load(run.path("index", f"{modality}.faiss"), nprobe), emb), 4)
    return run.update(index={"nprobe": nprobe, "recall_at_10": recall})["index"]


SPLIT_FIELDS = ("source", "split", "split_seed", "inject_fraction", "inject_seed", "model")


def same_split(a: RunConfig, b: RunConfig) -> bool:
    """The same data, split, injection and model (tokenizer): all a split-only run (`multimem split`) has fixed, so
    the training and metric settings of the stages still to run may differ."""
    return all(a.to_dict()[k] == b.to_dict()[k] for k in SPLIT_FIELDS)


def execute(run: Run, cfg: RunConfig, stages: tuple[str, ...] = STAGES, lineage: dict | None = None,
            stage_fns: dict[str, Callable] | None = None) -> dict:
    """Run (or resume) the given stages; returns the final manifest.

    `lineage` ({"parent": run name, "mitigation": {...}}) is recorded for a derived run (multimem.mitigate);
    `stage_fns` replaces a stage's work: {"train_f": fn(run, cfg, data, tokenizer)} (e.g. fine-tuning).
    """
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with run.lock():
        t_start = time.time()
        if run.exists():
            saved = run.manifest().get("config")
            # compared through from_dict, so that settings added later (with their defaults) are not a difference
            if saved and RunConfig.from_dict(saved).to_dict() != cfg.to_dict() and not (
                    not any(run.stage_done(s) for s in STAGES) and same_split(RunConfig.from_dict(saved), cfg)):
                raise RunError(f"run {run.name!r} exists with other settings; resume it with the same ones or use a new name")
        if run.exists() and all(run.stage_done(s) for s in stages) and run.manifest().get("status") == COMPLETE:
            return run.manifest()  # nothing to do: `make run` on a finished demo opens the app at once
        old_lineage = run.manifest().get("lineage") if run.exists() else None
        run.update(status=RUNNING, config=cfg.to_dict(), versions=versions(), error=None,
                   lineage=lineage or old_lineage or {"parent": None, "mitigation": None})
        try:
            t0 = time.time()
            data, source = prepare(run, cfg)
            tok = _tokenizer(run, cfg, data)
            data.tokenize(tok)
            setup = time.time() - t0
            run.update(timings={"prepare": round(setup, 2)}, model={"unknown_tokens": unknown_tokens(data, tok)})
            for stage in stages:
                if run.stage_done(stage):
                    continue
                t_stage = time.time()
                if stage_fns and stage in stage_fns:
                    stage_fns[stage](run, cfg, data, tok)
                elif stage in ("train_f", "train_g"):
                    train_stage(run, cfg, data, tok, stage[-1])
                elif stage == "score":
                    score_stage(run, cfg, data)
                elif stage == "evaluate":
                    evaluate_stage(run, cfg, data, source)
                elif stage == "index":
                    index_stage(run, data)
                # the whole stage as the user waited for it: the first one of an invocation includes reading the
                # data and tokenizing (models are loaded inside the stages)
                run.update(timings={stage: round(time.time() - t_stage + setup, 2)})
                setup = 0.0
        except KeyboardInterrupt:
            run.update(status="incomplete", error="interrupted; run the same command again to resume")
            raise
        except BaseException as exc:
            run.update(status=FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        done = all(run.stage_done(s) for s in STAGES)
        run.report_progress(None)
        m = run.update(status=COMPLETE if done else "incomplete", progress=None,
                       timings={"last_invocation": round(time.time() - t_start, 2)})
    return m
