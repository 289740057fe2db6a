"""A run end to end: source -> split -> train f, g -> score -> evaluate -> index -> run directory.

Each stage is recorded in the manifest when its files are written; running the same run again skips what is
done and resumes training from its last epoch checkpoint. The status becomes "complete" only after the last stage.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd
import torch

from multimem import summary as run_summary
from multimem.data.dataset import PairData
from multimem.data.splits import TRAIN_F
from multimem.pipeline.config import RunConfig, same_split, versions
from multimem.pipeline.data import prepare, progress_callback, tokenizer_for, unknown_tokens
from multimem.pipeline.training import load_pair, load_replicas, train_stage
from multimem.store.atomic import atomic_numpy, atomic_parquet
from multimem.store.runs import COMPLETE, FAILED, RUNNING, STAGES, Run, RunError


def with_sample_columns(run: Run, table: pd.DataFrame) -> pd.DataFrame:
    """The scores table preceded by each scored row's samples.parquet columns (id, subset, captions, ...)."""
    samples = pd.read_parquet(run.files.samples).iloc[table["row"].to_numpy()].reset_index(drop=True)
    return pd.concat([samples, table], axis=1)


def shared_range_with_parent(run: Run, table: pd.DataFrame, parent_name: str) -> dict:
    """One normalisation range for a derived run and its parent, with both runs' subset means on that scale."""
    try:
        parent = Run(run.root, parent_name)
        ps = parent.scores()
        prange = parent.info().normalisation.get("range")
    except (RunError, OSError) as exc:
        return {"parent": parent_name, "range": None, "error": f"parent scores unavailable: {exc}"}
    r = run_summary.shared_range(ps, table)
    means = lambda t: {s: v / r for s, v in run_summary.subset_means(t, "multimem_raw").items()}
    return {"parent": parent_name, "range": r, "parent_range": prange, "mean_multimem": means(table),
            "parent_mean_multimem": means(ps)}


def score_stage(run: Run, cfg: RunConfig, data: PairData) -> None:
    """Scores of the scored samples and clean embeddings of every sample; under torchrun every rank calls it with
    the same data, each embeds its share, and rank 0 writes the run."""
    from multimem.engine import distributed
    from multimem.engine.embeddings import EmbeddingParts, assemble
    from multimem.engine.score import iter_clean, score, scored_rows

    t0 = time.time()
    fs, gs = load_replicas(run, cfg)
    fs, gs = [m.to(distributed.device()) for m in fs], [m.to(distributed.device()) for m in gs]
    # scoring embeds the clean views of the scored rows; the rest are embedded here, each row once
    scored = scored_rows(data, cfg.metric)
    mine_rest = distributed.shard(np.setdiff1d(np.arange(len(data)), scored))
    parts = EmbeddingParts(run.files.embeddings, len(data), np.concatenate([distributed.shard(scored), mine_rest]),
                           distributed.rank())
    report = progress_callback(run, "score", "samples") if distributed.is_main() else (lambda done, total: None)
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
    assemble(run.files.embeddings, len(data), distributed.world_size())
    table = with_sample_columns(run, table)
    table = pd.concat([table, run_summary.calibration(table)], axis=1)
    atomic_parquet(table, run.files.scores)
    normalisation = summary["normalisation"]
    parent = run.info().parent
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
    from multimem.engine.evaluate import evaluate

    t0 = time.time()
    f, g, tok = load_pair(run, cfg)
    template = cfg.prompt_template or getattr(source, "prompt_template", "a photo of {label}")
    run.update(utility={"f": evaluate(f, data, tok, template), "g": evaluate(g, data, tok, template),
                        "prompt_template": template})
    run.mark_stage("evaluate", time.time() - t0)


def index_stage(run: Run, data: PairData) -> None:
    from multimem.engine import index

    t0 = time.time()
    rows = data.rows(*TRAIN_F)
    params = index.plan(len(rows))  # exact while small, IVF above index.EXACT_MAX (docs/benchmarks.md)
    recall = {}
    for modality in run.info().modalities:
        emb = np.load(run.files.embedding("f", modality), mmap_mode="r")[rows]
        built = index.build(emb, params)
        if not params["exact"]:  # what the approximation costs on this run's own embeddings
            recall[modality] = round(index.recall_at_k(built, emb), 4)
        index.save(built, run.files.index(modality))
    atomic_numpy(rows, run.files.index_rows)
    run.update(index={**params, "metric": "cosine", "vectors": int(len(rows)), "model": "f",
                      "subsets": list(TRAIN_F), "exact_max": index.EXACT_MAX,
                      "recall_at_10": recall or None})
    run.mark_stage("index", time.time() - t0)


def set_nprobe(run: Run, nprobe: int) -> dict:
    """Search an approximate index with `nprobe` lists from now on, its recall@10 measured again; the manifest's
    index entry after the change (the app reads nprobe from it). Nothing is rebuilt."""
    from multimem.engine import index

    m = run.manifest().get("index") or {}
    if not run.stage_done("index"):
        raise RunError(f"run {run.name!r} has no index yet; run `multimem index {run.name}` first")
    if m.get("exact", True):
        raise RunError(f"run {run.name!r} has an exact index ({m.get('vectors')} vectors): nprobe does not apply")
    if not 1 <= nprobe <= m["nlist"]:
        raise RunError(f"--nprobe must be between 1 and the index's {m['nlist']} lists, got {nprobe}")
    rows = np.load(run.files.index_rows)
    recall = {}
    for modality in run.info().modalities:
        emb = np.load(run.files.embedding("f", modality), mmap_mode="r")[rows]
        recall[modality] = round(index.recall_at_k(index.load(run.files.index(modality), nprobe), emb), 4)
    return run.update(index={"nprobe": nprobe, "recall_at_10": recall})["index"]


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
            tok = tokenizer_for(run, cfg, data)
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
