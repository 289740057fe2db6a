"""Command line: `multimem demo|train|score|evaluate|index|runs|mitigate|sweep` (also `python -m multimem ...`)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from multimem.cli import scale
from multimem.pipeline import presets
from multimem.store.runs import DEFAULT_ROOT, Run, RunError, list_runs
from multimem.data.sources.base import DataError
from multimem.mitigation import base as strategies_base
from multimem.summary import Interval
from multimem.engine.train import TrainingError
from multimem.store.manifest import Manifest

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


def _train_options(p: argparse.ArgumentParser) -> None:
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


def _print_summary(m: dict, root: Path | None = None) -> None:
    """A run's headline figures, what its data reading skipped, and the command to run next."""
    s = m.get("summary") or {}
    means = s.get("mean_multimem") or {}
    print(f"run {m['name']}: {m.get('status')}")
    _print_data(m)
    for tag, t in sorted((m.get("training") or {}).items()):
        if t.get("final_epoch_loss") is not None:
            print(f"  {tag} trained {t['epochs']} epochs: mean loss of the last epoch {t['final_epoch_loss']:.3f}")
    if means:
        print("  mean normalised MultiMem: " + ", ".join(f"{k} {v:+.3f}" for k, v in means.items()))
    diag = s.get("diagnostics")
    if diag:
        offset, gap = Interval.from_dict(diag["offset"]), Interval.from_dict(diag["gap_candidate_shared"])
        print(f"  raw S_C − S_S gap {gap.text(4)}; model-level offset (S_S sample, expected 0) {offset.text(4)}")
        for warning in diag.get("warnings") or []:
            print(f"  warning: {warning}")
    if "injected_auc" in s:
        print(f"  injected mis-captions: ROC-AUC {s['injected_auc']:.3f}, "
              f"precision at top 5% {s['injected_precision_at_5pct']:.3f}")
    for tag in ("f", "g"):
        u = Manifest(m).utility(tag)
        if u:
            zs = f", zero-shot {u['zero_shot_top1']:.3f}" if "zero_shot_top1" in u else ""
            print(f"  {tag}: image->text R@5 {u['image_to_text_R@5']:.3f}, text->image R@5 {u['text_to_image_R@5']:.3f}{zs}")
    step = next_step(m, root)
    if step:
        print(f"  next: {step}")


def _print_data(m: dict) -> None:
    """The samples read: how many, how many were skipped and why (the first few named), injected, unknown words."""
    d = m.get("dataset") or {}
    if not d:
        return
    skipped = d.get("skipped") or {}
    line = f"  data: {d.get('n_samples', 0)} samples used, {skipped.get('count', 0)} skipped"
    if d.get("n_injected"):
        line += f", {d['n_injected']} given another sample's captions on purpose (--inject {d.get('inject_fraction')})"
    print(line)
    if skipped.get("count"):
        reasons = skipped.get("reasons") or {}
        if reasons:
            print("  skipped: " + "; ".join(f"{why} ({n})" for why, n in reasons.items()))
        for e in (skipped.get("examples") or [])[:5]:
            print(f"    {e['where']}: {e['reason']}")
    unknown = Manifest(m).model.get("unknown_tokens") or {}
    if unknown.get("all"):
        print(f"  vocabulary: {unknown['all']} caption tokens ({unknown['extra']} in S_E) are outside the model's "
              f"compact vocabulary and read as one unknown token; see the README, 'Vocabulary'")


def next_step(m: dict, root: Path | None = None) -> str | None:
    """The command that moves the run on: the first stage not done, or the dashboard when all are."""
    name, stages = m["name"], m.get("stages") or {}
    where = f" --runs-root {root}" if root is not None and Path(root) != DEFAULT_ROOT else ""
    if m.get("status") == "failed":
        return "fix what the error says, then run the same command again (finished stages are kept)"
    if stages.get("train_f") != "done" or stages.get("train_g") != "done":
        return (f"multimem train --name {name}{where} with the data options of this run, or train elsewhere: "
                f"multimem export-split {name}{where} --format csv --out DIR")
    for stage in ("score", "evaluate", "index"):
        if stages.get(stage) != "done":
            return f"multimem {stage} {name}{where}"
    return f"the dashboard: MULTIMEM_RUNS={root or DEFAULT_ROOT} streamlit run app.py"


def cmd_demo(args) -> int:
    from multimem.pipeline.stages import execute

    cfg = build_config(args, presets.demo(fast=args.fast))
    name = args.name or ("demo-fast" if args.fast else "demo")
    m = execute(Run(args.runs_root, name), cfg)
    _print_summary(m, args.runs_root)
    print(f"  folder: {Run(args.runs_root, name).dir}")
    return 0


def cmd_train(args) -> int:
    from multimem.pipeline.stages import execute
    from multimem.pipeline.training import train_replica

    if args.replica is not None:  # one replica as a job of its own, on a run made before
        run = Run(args.runs_root, args.name)
        written = train_replica(run, args.replica)
        print(f"run {args.name}: replica {args.replica}: " + (", ".join(written) or "already trained"))
        print(f"  next: when every replica is trained, multimem score {args.name}"
              + ("" if Path(args.runs_root) == DEFAULT_ROOT else f" --runs-root {args.runs_root}"))
        return 0

    cfg = build_config(args, presets.demo(fast=args.fast))
    stages = ("train_f", "train_g") if not args.all else ("train_f", "train_g", "score", "evaluate", "index")
    m = execute(Run(args.runs_root, args.name), cfg, stages)
    _print_summary(m, args.runs_root)
    return 0


def _existing(args):
    from multimem.pipeline.config import RunConfig

    run = Run(args.runs_root, args.name)
    m = run.manifest()
    if "config" not in m:
        raise RunError(f"run {args.name!r} has no saved settings; create it with `multimem train`")
    return run, RunConfig.from_dict(m["config"])


def _parent_and_strategy(p: argparse.ArgumentParser, strategies: str) -> None:
    """What `mitigate` and `sweep` both start from: the baseline run and the strategy."""
    p.add_argument("--from", dest="parent", required=True, metavar="RUN", help="the parent (baseline) run's name")
    p.add_argument("--strategy", required=True, help=f"the mitigation: {strategies}")


def _stage_command(stage: str):
    def command(args) -> int:
        from multimem.pipeline.stages import execute, set_nprobe

        run, cfg = _existing(args)
        m = execute(run, cfg, (stage,))
        if getattr(args, "nprobe", None) is not None:
            with run.lock():
                ix = set_nprobe(run, args.nprobe)
            print(f"run {run.name}: index searches {ix['nprobe']} of {ix['nlist']} lists; recall@10 against exact "
                  + ", ".join(f"{k} {v:.3f}" for k, v in ix["recall_at_10"].items()))
            return 0
        _print_summary(m, args.runs_root)
        return 0

    return command


def cmd_score(args) -> int:
    return scale.cmd_score(args, build_config, _existing, lambda m: _print_summary(m, args.runs_root))


def cmd_split(args) -> int:
    return scale.cmd_split(args, build_config, presets.demo(fast=args.fast), _print_data)


def cmd_runs(args) -> int:
    import pandas as pd

    df = list_runs(args.runs_root)
    for note in df.attrs.get("skipped", []):  # folders that are not usable runs; the others are still listed
        print(f"multimem: skipped {note}", file=sys.stderr)
    if df.empty:
        print(f"no runs in {args.runs_root} (make one with `multimem demo`)")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(df.to_string(index=False))
    return 0


# ---- mitigation (multimem.mitigate, multimem.sweep): numbers are parsed here so a bad value is a one-line error

def _mitigation_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per strategy setting, grouped under the first strategy that has it (from the registry)."""
    made = {name: p.add_argument_group(f"{s.summary} (--strategy {name})")
            for name, s in strategies_base.strategies().items()}
    for option, o in strategies_base.options().items():
        made[o.strategies[0]].add_argument("--" + option.replace("_", "-"), dest=option, default=None,
                                           metavar="VALUE", help=o.cli_help())


def _mitigation_values(args) -> dict:
    return {opt: strategies_base.parse_option(opt, getattr(args, opt)) for opt in strategies_base.options()
            if getattr(args, opt, None) is not None}


def _print_comparison(m: dict) -> None:
    c = m.get("comparison") or {}
    if not c:
        return
    print(f"  compared with {c['parent']} (raw CMC_f − CMC_g; one shared range {c['shared_range']:.4f}):")
    for s, v in c["subsets"].items():
        if "relative_change" in v:
            rel = "" if v["relative_change"] is None else f" ({v['relative_change'] * 100:+.1f}%)"
            change = v.get("change")
            sure = ""
            if change:  # older runs have no interval
                iv = Interval.from_dict(change)
                sure = f"; change {iv.text(4)}" if iv.within_noise else f"; change {iv.text(4)}, beyond noise"
                sure += "" if iv.replicas > 1 else " (one replica: training noise not in the interval)"
            print(f"    mean on {s}: {v['parent_raw']:+.4f} -> {v['raw']:+.4f}{rel}{sure}")
        elif v.get("raw") is not None:
            print(f"    mean on {s} ({v['n']}): {v['parent_raw']:+.4f} -> {v['raw']:+.4f}")
    a, b = c["utility_f"]["parent"], c["utility_f"]["run"]
    if a and b:
        print(f"    f mean R@5: {a['mean_R@5']:.3f} -> {b['mean_R@5']:.3f}")
    cost = Manifest(m).mitigation.get("cost") or {}
    if cost.get("relative_to_parent_training") is not None:
        print(f"    cost: {cost['mitigation_seconds']:.0f} s against {cost['parent_training_seconds']:.0f} s "
              f"training the parent's f and g ({cost['relative_to_parent_training']:.2f}x)")


def cmd_mitigate(args) -> int:
    from multimem.mitigation import derive

    params = strategies_base.make_params(args.strategy, **_mitigation_values(args))
    m = derive.mitigate(args.runs_root, args.parent, args.strategy, params, args.name, args.replicas)
    _print_summary(m, args.runs_root)
    _print_comparison(m)
    print(f"  folder: {Run(args.runs_root, m['name']).dir}")
    return 0


def cmd_sweep(args) -> int:
    from multimem.mitigation import sweep

    key = strategies_base.get(args.strategy).swept
    values = [strategies_base.parse_option(key, v) for v in args.values.split(",") if v.strip()]
    rankings = [r.strip() for r in args.rankings.split(",") if r.strip()] if args.rankings else None
    paths = sweep.run_sweep(args.runs_root, args.parent, args.strategy, values, _mitigation_values(args), rankings,
                            args.sweep_name)
    table = __import__("pandas").read_csv(paths["table_csv"])
    cols = [c for c in ("run", "series", "value", "mean_raw_candidate", "mean_shared_candidate",
                        "relative_change_candidate", "paired_change_low", "paired_change_high", "change_within_noise",
                        "f_mean_R@5", "cost_seconds") if c in table]
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20,
                                             "display.float_format", "{:.4f}".format):
        print(table[cols].to_string(index=False))
    for k, v in paths.items():
        print(f"  {k}: {v}")
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
    t.add_argument("--replica", type=int, default=None, metavar="K",
                   help="train only replica K (0-based) of f and g of a run made before (e.g. by `multimem split "
                        "--replicas N`), as a job of its own: N such jobs can run side by side (a SLURM array, "
                        "several machines sharing the runs folder); then `multimem score NAME` takes them up")
    _root(t); _data_options(t); _train_options(t); _metric_options(t)
    t.set_defaults(func=cmd_train)

    sp = sub.add_parser("split", help="create a run with its split only (to train f and g elsewhere)",
                        description="Read a dataset, split it into S_S / S_C / S_I / S_E (seeded) and inject "
                                    "mis-captions if asked, without training; then `multimem export-split`.")
    sp.add_argument("--name", required=True, help="run name (a new folder under --runs-root)")
    sp.add_argument("--fast", action="store_true", help="start from the tiny test preset instead of the default")
    _root(sp); _data_options(sp); _train_options(sp); _metric_options(sp)
    sp.set_defaults(func=cmd_split)

    e = scale.add_export_parser(sub)
    _root(e)
    e.set_defaults(func=scale.cmd_export)

    sc = sub.add_parser("score", help="score S_C, S_I and a sample of S_S with MultiMem (needs trained f and g)",
                        description="Score S_C, S_I and a sample of S_S with MultiMem, with the run's f and g or with "
                                    "checkpoints trained elsewhere (--f-checkpoint, --g-checkpoint). Under "
                                    "`torchrun --nproc_per_node N -m multimem score RUN` each process scores a "
                                    "shard and the first one writes the run.")
    sc.add_argument("name", help="run name")
    _root(sc); _metric_options(sc)
    scale.add_score_options(sc)
    sc.set_defaults(func=cmd_score)

    for stage, text in (("evaluate", "retrieval Recall@1/5/10 and zero-shot accuracy of f and g on S_E"),
                        ("index", "build the FAISS indices over f's embeddings of the training samples")):
        s = sub.add_parser(stage, help=text, description=text[0].upper() + text[1:] + ".")
        s.add_argument("name", help="run name")
        if stage == "index":
            s.add_argument("--nprobe", type=int, default=None,
                           help="approximate (IVF) indices only: lists searched per query from now on; recall@10 is "
                                "measured again and recorded (nothing is rebuilt)")
        _root(s)
        s.set_defaults(func=_stage_command(stage))

    known = list(strategies_base.strategies())
    strategies = ", ".join(known[:-1]) + " or " + known[-1]
    swept = ", ".join(f"{n}: --{s.swept.replace('_', '-')}" for n, s in strategies_base.strategies().items())
    mi = sub.add_parser("mitigate", help="derive a mitigated run from a baseline run (METHOD.md section 4)",
                        description="Create a run derived from --from with one mitigation strategy: the same data, "
                                    "split and injection, lineage recorded in its manifest, scored and evaluated so "
                                    "that the dashboard's Compare page shows memorization and utility before and "
                                    "after. Run the same command again to resume.", epilog=EPILOG)
    _parent_and_strategy(mi, strategies)
    mi.add_argument("--name", help="name of the derived run (default: PARENT.STRATEGY-SETTINGS, e.g. demo.noise-all-0.1)")
    mi.add_argument("--replicas", type=int, default=None,
                    help="seeds of f and g the derived run trains (noise, captions; default: the parent's); "
                         "intervals then include training noise")
    _root(mi); _mitigation_arguments(mi)
    mi.set_defaults(func=cmd_mitigate)

    sw = sub.add_parser("sweep", help="run one strategy over a list of values; write a table and a plot",
                        description="Run a strategy from --from once per value of its swept setting ("
                                    f"{swept}) and write a table (CSV, Parquet) and a plot (HTML) of memorization against utility to "
                                    "RUNS_ROOT/_sweeps/NAME/. Runs already done are reused.", epilog=EPILOG)
    _parent_and_strategy(sw, strategies)
    sw.add_argument("--values", required=True, help="comma-separated values of the swept setting, e.g. 0.05,0.1,0.2 "
                                                    "(noise), 50,100,200 (removal), 1,2,all (captions)")
    sw.add_argument("--rankings", default=None, help="removal only: comma-separated rankings, one series each, e.g. "
                                                     "multimem,cosine,random (default: --ranking's value)")
    sw.add_argument("--sweep-name", default=None, help="name of the output folder (default PARENT.STRATEGY)")
    _root(sw); _mitigation_arguments(sw)
    sw.set_defaults(func=cmd_sweep)

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
