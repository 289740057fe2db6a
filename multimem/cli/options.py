"""Options shared by the commands (data, training, metric, runs root) and the one builder of a RunConfig
from them, used by every command and by the dashboard's job checks (multimem.preflight)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from multimem.errors import DataError
from multimem.store.runs import DEFAULT_ROOT, Run, RunError


def runs_root_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-root", type=Path, default=DEFAULT_ROOT,
                   help="folder holding the run folders (default: %(default)s, or $MULTIMEM_RUNS)")


def data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--source", choices=["twemoji", "csv", "wds", "coco"], default="twemoji",
                   help="dataset format: the embedded Twemoji set, an open_clip CSV/TSV, webdataset tar shards, "
                        "or COCO captions JSON (default: %(default)s)")
    g.add_argument("--path", help="CSV/TSV file, tar shard(s) or folder of shards, or COCO captions JSON")
    g.add_argument("--image-col", default="filepath", help="CSV column with image paths (default: %(default)s)")
    g.add_argument("--caption-col", default="title", help="CSV column with captions (default: %(default)s)")
    g.add_argument("--label-col", default=None, help="optional CSV column with class labels for zero-shot")
    g.add_argument("--sep", default=None, help="CSV separator (default: tab for .tsv, else comma)")
    g.add_argument("--images-dir", default=None, help="COCO image folder (default: the JSON's folder)")
    g.add_argument("--limit", type=int, default=None, help="Twemoji only: use N emoji, evenly spaced over all categories")
    g.add_argument("--stream", action="store_true", default=None,
                   help="decode images batch by batch instead of holding them all in memory (large datasets)")
    s = p.add_argument_group("split")
    s.add_argument("--candidate", type=float, default=None,
                   help="|S_C| (= |S_I|) as a count, or a fraction of the data when < 1 (default 0.12)")
    s.add_argument("--extra", type=float, default=None, help="|S_E| as a count or fraction (default 0.15)")
    s.add_argument("--shared", type=float, default=None, help="|S_S| as a count or fraction (default: the rest)")
    s.add_argument("--split-seed", type=int, default=None, help="seed of the split (default 0)")
    s.add_argument("--inject", type=float, default=None,
                   help="fraction of each training subset given another sample's captions, recorded as ground "
                        "truth, for a controlled check of the metric (default: 0.05 on the embedded Twemoji set, "
                        "0 on your own data: your captions are never changed unless you pass this)")


def train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and training")
    g.add_argument("--model", default=None,
                   help="open_clip model name: a shipped config (mm-tiny, mm-small) or any open_clip architecture")
    g.add_argument("--epochs", type=int, default=None, help="training epochs for f and g")
    g.add_argument("--batch-size", type=int, default=None, help="training batch size")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (AdamW, warm-up + cosine)")
    g.add_argument("--seed", type=int, default=None, help="seed for initialisation, data order and augmentation")
    g.add_argument("--replicas", type=int, default=None,
                   help="K: train K seeds of f and K of g on the same split (replica k uses seed + k); scores average "
                        "the K paired differences and keep their standard error (default 1, the paper's score; "
                        "K times the training time)")


def metric_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("metric (METHOD.md)")
    g.add_argument("--augmentations", type=int, default=None, help="A: augmented views averaged per sample (default 5)")
    g.add_argument("--heldout-size", type=int, default=None, help="|H|: held-out samples from S_E (default 1000)")
    g.add_argument("--text-augmentation", choices=["captions", "identity"], default=None,
                   help="text views: one of the sample's captions per view, or always the first (default captions)")


def build_config(args: argparse.Namespace, base):
    """The preset `base` with every option the user gave applied on top."""
    cfg = base
    source = dict(cfg.source)
    if getattr(args, "source", None) and (args.source != "twemoji" or source.get("kind") != "twemoji"):
        if args.source != "twemoji" and not args.path:
            raise DataError(f"--source {args.source} needs --path (the file or folder to read)")
        source = {
            "twemoji": {"kind": "twemoji"},
            "csv": {"kind": "csv", "path": args.path, "image_col": args.image_col, "caption_col": args.caption_col,
                    "label_col": args.label_col, "sep": args.sep},
            "wds": {"kind": "wds", "paths": args.path},
            "coco": {"kind": "coco", "annotations": args.path, "images_dir": args.images_dir},
        }[args.source]
    if getattr(args, "limit", None) is not None and source.get("kind") == "twemoji":
        source["limit"] = args.limit
    split = cfg.split
    for key in ("candidate", "extra", "shared"):
        if getattr(args, key, None) is not None:
            split = dataclasses.replace(split, **{key: getattr(args, key)})
    train = cfg.train
    for opt, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"), ("seed", "seed")):
        if getattr(args, opt, None) is not None:
            train = dataclasses.replace(train, **{key: getattr(args, opt)})
    metric = cfg.metric
    for opt in ("augmentations", "heldout_size", "text_augmentation"):
        if getattr(args, opt, None) is not None:
            metric = dataclasses.replace(metric, **{opt: getattr(args, opt)})
    if getattr(args, "seed", None) is not None:
        metric = dataclasses.replace(metric, seed=args.seed)
    changes = {"source": source, "split": split, "train": train, "metric": metric}
    if getattr(args, "model", None):
        changes["model"] = args.model
    if getattr(args, "split_seed", None) is not None:
        changes["split_seed"] = args.split_seed
    if getattr(args, "inject", None) is not None:
        if not 0 <= args.inject < 1:
            raise DataError(f"--inject must be a fraction in [0, 1), got {args.inject}")
        changes["inject_fraction"] = args.inject
    elif hasattr(args, "source") and source.get("kind") != "twemoji":  # a command that creates a run
        changes["inject_fraction"] = 0.0  # a user's own captions are altered only when they ask (--inject)
    if getattr(args, "stream", None):
        changes["stream"] = True
    if getattr(args, "replicas", None) is not None:
        if args.replicas < 1:
            raise DataError(f"--replicas must be at least 1, got {args.replicas}")
        changes["replicas"] = args.replicas
    cfg = dataclasses.replace(cfg, **changes)
    from multimem.model.factory import model_config

    model_config(cfg.model)  # unknown names fail here, before any work
    if cfg.metric.augmentations < 1:
        raise DataError("--augmentations must be at least 1")
    return cfg


def existing(args):
    """The run named on the command line and its saved settings (RunConfig)."""
    from multimem.pipeline.config import RunConfig

    run = Run(args.runs_root, args.name)
    m = run.manifest()
    if "config" not in m:
        raise RunError(f"run {args.name!r} has no saved settings; create it with `multimem train`")
    return run, RunConfig.from_dict(m["config"])
