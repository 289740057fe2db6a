"""Command line: `multimem demo|train|score|evaluate|index|runs` (also `python -m multimem ...`)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from multimem import presets
from multimem.runs import DEFAULT_ROOT, Run, RunError, list_runs
from multimem.sources.base import DataError
from multimem.train import TrainingError

EPILOG = "Runs are folders under --runs-root; the dashboard (`make run`) reads them. Method: METHOD.md."


def _root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-root", type=Path, default=DEFAULT_ROOT,
                   help="folder holding the run folders (default: %(default)s, or $MULTIMEM_RUNS)")


def _data_options(p: argparse.ArgumentParser) -> None:
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
    s = p.add_argument_group("split")
    s.add_argument("--candidate", type=float, default=None,
                   help="|S_C| (= |S_I|) as a count, or a fraction of the data when < 1 (default 0.12)")
    s.add_argument("--extra", type=float, default=None, help="|S_E| as a count or fraction (default 0.15)")
    s.add_argument("--shared", type=float, default=None, help="|S_S| as a count or fraction (default: the rest)")
    s.add_argument("--split-seed", type=int, default=None, help="seed of the split (default 0)")
    s.add_argument("--inject", type=float, default=None,
                   help="fraction of each training subset given another sample's captions, recorded as ground "
                        "truth (the demo uses 0.05; 0 for real data)")


def _train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and training")
    g.add_argument("--model", default=None,
                   help="open_clip model name: a shipped config (mm-tiny, mm-small) or any open_clip architecture")
    g.add_argument("--epochs", type=int, default=None, help="training epochs for f and g")
    g.add_argument("--batch-size", type=int, default=None, help="training batch size")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (AdamW, warm-up + cosine)")
    g.add_argument("--seed", type=int, default=None, help="seed for initialisation, data order and augmentation")


def _metric_options(p: argparse.ArgumentParser) -> None:
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
        changes["inject_fraction"] = args.inject
    cfg = dataclasses.replace(cfg, **changes)
    from multimem.models import model_config

    model_config(cfg.model)  # unknown names fail here, before any work
    if cfg.metric.augmentations < 1:
        raise DataError("--augmentations must be at least 1")
    return cfg


def _print_summary(m: dict) -> None:
    s = m.get("summary") or {}
    means = s.get("mean_multimem") or {}
    print(f"run {m['name']}: {m.get('status')}")
    if means:
        print("  mean normalised MultiMem: " + ", ".join(f"{k} {v:+.3f}" for k, v in means.items()))
    if "injected_auc" in s:
        print(f"  injected mis-captions: ROC-AUC {s['injected_auc']:.3f}, "
              f"precision at top 5% {s['injected_precision_at_5pct']:.3f}")
    for tag in ("f", "g"):
        u = (m.get("utility") or {}).get(tag)
        if u:
            zs = f", zero-shot {u['zero_shot_top1']:.3f}" if "zero_shot_top1" in u else ""
            print(f"  {tag}: image->text R@5 {u['image_to_text_R@5']:.3f}, text->image R@5 {u['text_to_image_R@5']:.3f}{zs}")


def cmd_demo(args) -> int:
    from multimem.pipeline import execute

    cfg = build_config(args, presets.demo(fast=args.fast))
    name = args.name or ("demo-fast" if args.fast else "demo")
    m = execute(Run(args.runs_root, name), cfg)
    _print_summary(m)
    print(f"  folder: {Run(args.runs_root, name).dir}")
    return 0


def cmd_train(args) -> int:
    from multimem.pipeline import execute

    cfg = build_config(args, presets.demo(fast=args.fast))
    stages = ("train_f", "train_g") if not args.all else ("train_f", "train_g", "score", "evaluate", "index")
    m = execute(Run(args.runs_root, args.name), cfg, stages)
    _print_summary(m)
    return 0


def _existing(args):
    from multimem.pipeline import RunConfig

    run = Run(args.runs_root, args.name)
    m = run.manifest()
    if "config" not in m:
        raise RunError(f"run {args.name!r} has no saved settings; create it with `multimem train`")
    return run, RunConfig.from_dict(m["config"])


def _stage_command(stage: str):
    def command(args) -> int:
        from multimem.pipeline import execute

        run, cfg = _existing(args)
        new = build_config(args, cfg) if stage == "score" else cfg
        if new != cfg:  # other metric settings: the scores and what derives from them are redone
            m = run.manifest()
            for s in ("score", "index"):
                m.get("stages", {}).pop(s, None)
            m["config"] = new.to_dict()
            run.write_manifest(m)
        m = execute(run, new, (stage,) if stage != "score" else ("score",))
        _print_summary(m)
        return 0

    return command


def cmd_runs(args) -> int:
    import pandas as pd

    df = list_runs(args.runs_root)
    if df.empty:
        print(f"no runs in {args.runs_root} (make one with `multimem demo`)")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(df.to_string(index=False))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multimem", description="Measure memorization in CLIP-style models with MultiMem.",
                                epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the embedded Twemoji dataset end to end: train f and g, score, evaluate, index",
                       description="Train f and g on the embedded Twemoji dataset, score every candidate with "
                                   "MultiMem, evaluate utility and build the FAISS indices. Run again to resume.")
    d.add_argument("--fast", action="store_true", help="tiny preset (400 emoji, tiny model, 2 epochs) for tests")
    d.add_argument("--name", help="run name (default: demo, or demo-fast with --fast)")
    _root(d); _data_options(d); _train_options(d); _metric_options(d)
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="create a run from a dataset and train f (S_S+S_C) and g (S_S+S_I)",
                       description="Split a dataset, inject mis-captions if asked, and train f and g. "
                                   "An interrupted training resumes from its last epoch checkpoint.")
    t.add_argument("--name", required=True, help="run name (a new folder under --runs-root)")
    t.add_argument("--fast", action="store_true", help="start from the tiny test preset instead of the default")
    t.add_argument("--all", action="store_true", help="also score, evaluate and index (the whole run)")
    _root(t); _data_options(t); _train_options(t); _metric_options(t)
    t.set_defaults(func=cmd_train)

    for stage, text in (("score", "score S_C, S_I and a sample of S_S with MultiMem (needs trained f and g)"),
                        ("evaluate", "retrieval Recall@1/5/10 and zero-shot accuracy of f and g on S_E"),
                        ("index", "build the FAISS indices over f's embeddings of the training samples")):
        s = sub.add_parser(stage, help=text, description=text[0].upper() + text[1:] + ".")
        s.add_argument("name", help="run name")
        _root(s)
        if stage == "score":
            _metric_options(s)
        s.set_defaults(func=_stage_command(stage))

    r = sub.add_parser("runs", help="list runs with status and headline figures",
                       description="List the runs under --runs-root with status and headline figures.")
    _root(r)
    r.set_defaults(func=cmd_runs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, RunError, TrainingError) as exc:
        print(f"multimem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("multimem: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
