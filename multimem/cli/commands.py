"""The run commands: demo, train (and one replica), evaluate and index of an existing run, runs."""
from __future__ import annotations

import sys
from pathlib import Path

from multimem.cli.options import build_config, existing
from multimem.cli.output import print_summary
from multimem.pipeline import presets
from multimem.store.runs import DEFAULT_ROOT, Run, list_runs


def cmd_demo(args) -> int:
    from multimem.pipeline.stages import execute

    cfg = build_config(args, presets.demo(fast=args.fast))
    name = args.name or ("demo-fast" if args.fast else "demo")
    m = execute(Run(args.runs_root, name), cfg)
    print_summary(m, args.runs_root)
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
    print_summary(m, args.runs_root)
    return 0


def stage_command(stage: str):
    def command(args) -> int:
        from multimem.pipeline.stages import execute, set_nprobe

        run, cfg = existing(args)
        m = execute(run, cfg, (stage,))
        if getattr(args, "nprobe", None) is not None:
            with run.lock():
                ix = set_nprobe(run, args.nprobe)
            print(f"run {run.name}: index searches {ix['nprobe']} of {ix['nlist']} lists; recall@10 against exact "
                  + ", ".join(f"{k} {v:.3f}" for k, v in ix["recall_at_10"].items()))
            return 0
        print_summary(m, args.runs_root)
        return 0

    return command


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
