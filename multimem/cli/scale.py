"""Command line for scale-out work: `split`, `export-split`, and `score` of external or distributed jobs.

    multimem split --name RUN --source csv --path data.csv        # split only, no training
    multimem export-split RUN --format csv|wds --out DIR          # open_clip_train lists + commands
    multimem score RUN --model local-dir:DIR/model --f-checkpoint F.pt --g-checkpoint G.pt
    torchrun --nproc_per_node N -m multimem score RUN             # scoring sharded across processes
"""
from __future__ import annotations

import argparse
from pathlib import Path

from multimem.cli.options import build_config, existing
from multimem.cli.output import print_data, print_summary
from multimem.engine import distributed
from multimem.store.runs import Run
from multimem.errors import DataError
from multimem.store.manifest import Manifest


def cmd_split(args) -> int:
    from multimem.pipeline import presets
    from multimem.pipeline.stages import execute

    cfg = build_config(args, presets.demo(fast=args.fast))
    m = execute(Run(args.runs_root, args.name), cfg, stages=())
    sizes = m["split"]["sizes"]
    print(f"run {args.name}: split of {m['dataset']['n_samples']} samples: "
          + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    print_data(m)
    print(f"  next: multimem export-split {args.name} --format csv --out DIR  (or multimem train --name {args.name})")
    return 0


def cmd_export(args) -> int:
    from multimem.interop.openclip_train import export_split

    written = export_split(Run(args.runs_root, args.name), args.format, args.out, all_captions=not args.first_caption,
                           per_shard=args.per_shard)
    print(f"exported run {args.name} ({args.format}): f {written['f_pairs']} pairs, g {written['g_pairs']} pairs")
    print(f"  model folder: local-dir:{written['model']}")
    print(f"  commands: {written['commands']}")
    return 0


def _worker_score(run: Run, cfg) -> None:
    """A rank other than 0: embed this rank's shard; rank 0 gathers and writes (multimem.distributed)."""
    from multimem.model import factory
    from multimem.data.dataset import build
    from multimem.model.factory import store_size
    from multimem.pipeline.stages import score_stage
    from multimem.data.sources import open_source
    from multimem.model.tokenizer import CompactTokenizer

    data = build(open_source(cfg.source), cfg.split, cfg.split_seed, cfg.inject_fraction, cfg.inject_seed,
                 store_size(cfg.model), cfg.workers, stream=cfg.stream)
    m = run.manifest()
    data.tokenize(CompactTokenizer(cfg.model, factory.context_length(cfg.model), Manifest(m).model.get("token_map")))
    score_stage(run, cfg, data)


def cmd_score(args) -> int:
    """Score a run (importing external checkpoints first if given); under torchrun, every rank takes a shard.

    Scores that would replace a scored run's results (imported checkpoints, other metric settings) are computed in
    a staged copy and swapped in only when they are complete (multimem.staging): a failure leaves the run as it was.
    """
    from contextlib import nullcontext

    from multimem.store import staging
    from multimem.interop.openclip_train import import_checkpoints
    from multimem.pipeline.stages import execute

    distributed.init_from_env()
    if (args.f_checkpoint is None) != (args.g_checkpoint is None):
        raise DataError("give both --f-checkpoint and --g-checkpoint (the two models trained with and without S_C)")
    run, cfg = existing(args)
    new = build_config(args, cfg)
    importing = args.f_checkpoint is not None
    restage = importing or (new != cfg and run.stage_done("score"))
    if not restage and run.stage_done("score"):
        if distributed.is_main():
            print_summary(run.manifest(), args.runs_root)
        return 0
    distributed.barrier()  # every rank has decided before rank 0 writes anything
    with run.lock() if restage and distributed.is_main() else nullcontext():  # taken before anything is written
        target = run
        if restage:
            if distributed.is_main():
                if importing:
                    target = import_checkpoints(run, new.model, Path(args.f_checkpoint), Path(args.g_checkpoint),
                                                new.to_dict())
                else:  # other metric settings: the scores and the index that derive from them are redone
                    m = run.manifest()
                    manifest = {**{k: v for k, v in m.items() if k not in ("summary", "index", "metric", "error")},
                                "config": new.to_dict(),
                                "stages": {k: v for k, v in m["stages"].items() if k not in ("score", "index")}}
                    target = staging.stage(run, manifest, keep_results=("checkpoints", "history.parquet"))
            distributed.barrier()
            if not distributed.is_main():
                target = staging.staged_run(run)
                new = type(cfg).from_dict(target.manifest()["config"])
        elif new != cfg:  # not scored yet: the new metric settings simply become the run's
            m = run.manifest()
            m["config"] = new.to_dict()
            run.write_manifest(m)
        if not distributed.is_main():
            _worker_score(target, new)
            return 0
        stages = ("score",)
        if target is run and not (run.stage_done("train_f") and run.stage_done("train_g")) and all(
                run.files.checkpoint(t, k).exists() for t in "fg" for k in range(new.replicas)):
            stages = ("train_f", "train_g", "score")  # replicas trained by jobs of their own: the run takes them up
        m = execute(target, new, stages)
        if target is not run:
            m = staging.swap_in(target, run)
    print_summary(m, args.runs_root)
    return 0


def add_score_options(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("externally trained checkpoints (e.g. from open_clip_train)")
    g.add_argument("--model", default=None,
                   help="open_clip model name or local-dir:FOLDER the checkpoints were trained with "
                        "(default: the run's model; export-split writes FOLDER/model)")
    g.add_argument("--f-checkpoint", default=None, help="f's checkpoint (trained on S_S ∪ S_C): epoch_N.pt or a state dict")
    g.add_argument("--g-checkpoint", default=None, help="g's checkpoint (trained on S_S ∪ S_I)")


def add_export_parser(sub) -> None:
    e = sub.add_parser("export-split", help="write f's and g's training lists for open_clip_train, with the commands",
                       description="Write the training lists of f (S_S ∪ S_C) and g (S_S ∪ S_I) as open_clip CSV or "
                                   "webdataset shards, the model as an open_clip local-dir: folder, and COMMANDS.md "
                                   "with the torchrun / SLURM commands for both trainings and for scoring after.")
    e.add_argument("name", help="run name (made by `multimem split` or `multimem train`)")
    e.add_argument("--format", choices=["csv", "wds"], default="csv", help="open_clip CSV or webdataset shards (default: %(default)s)")
    e.add_argument("--out", type=Path, required=True, help="folder to write into")
    e.add_argument("--first-caption", action="store_true",
                   help="one row per image with its first caption (default: one row per caption)")
    e.add_argument("--per-shard", type=int, default=1000, help="samples per webdataset shard (default: %(default)s)")
    return e

