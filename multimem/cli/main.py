"""Command line: `multimem demo|train|split|score|evaluate|index|runs|mitigate|sweep|export-split` (also
`python -m multimem ...`): the parser and the entry point; each command group lives in its own module."""
from __future__ import annotations

import argparse
import sys

from multimem.cli import scale
from multimem.cli.commands import cmd_demo, cmd_runs, cmd_train, stage_command
from multimem.cli.mitigation import cmd_mitigate, cmd_sweep, mitigation_arguments, parent_and_strategy
from multimem.cli.options import data_options, metric_options, runs_root_option, train_options
from multimem.engine.train import TrainingError
from multimem.errors import DataError, RunError
from multimem.mitigation import base as strategies_base

EPILOG = "Runs are folders under --runs-root; the dashboard (`make run`) reads them. Method: METHOD.md."


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multimem", description="Measure memorization in CLIP-style models with MultiMem.",
                                epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the embedded Twemoji dataset end to end: train f and g, score, evaluate, index",
                       description="Train f and g on the embedded Twemoji dataset, score every candidate with "
                                   "MultiMem, evaluate utility and build the FAISS indices. Run again to resume.")
    d.add_argument("--fast", action="store_true", help="tiny preset (400 emoji, tiny model, 2 epochs) for tests")
    d.add_argument("--name", help="run name (default: demo, or demo-fast with --fast)")
    runs_root_option(d); data_options(d); train_options(d); metric_options(d)
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
    runs_root_option(t); data_options(t); train_options(t); metric_options(t)
    t.set_defaults(func=cmd_train)

    sp = sub.add_parser("split", help="create a run with its split only (to train f and g elsewhere)",
                        description="Read a dataset, split it into S_S / S_C / S_I / S_E (seeded) and inject "
                                    "mis-captions if asked, without training; then `multimem export-split`.")
    sp.add_argument("--name", required=True, help="run name (a new folder under --runs-root)")
    sp.add_argument("--fast", action="store_true", help="start from the tiny test preset instead of the default")
    runs_root_option(sp); data_options(sp); train_options(sp); metric_options(sp)
    sp.set_defaults(func=scale.cmd_split)

    e = scale.add_export_parser(sub)
    runs_root_option(e)
    e.set_defaults(func=scale.cmd_export)

    sc = sub.add_parser("score", help="score S_C, S_I and a sample of S_S with MultiMem (needs trained f and g)",
                        description="Score S_C, S_I and a sample of S_S with MultiMem, with the run's f and g or with "
                                    "checkpoints trained elsewhere (--f-checkpoint, --g-checkpoint). Under "
                                    "`torchrun --nproc_per_node N -m multimem score RUN` each process scores a "
                                    "shard and the first one writes the run.")
    sc.add_argument("name", help="run name")
    runs_root_option(sc); metric_options(sc)
    scale.add_score_options(sc)
    sc.set_defaults(func=scale.cmd_score)

    for stage, text in (("evaluate", "retrieval Recall@1/5/10 and zero-shot accuracy of f and g on S_E"),
                        ("index", "build the FAISS indices over f's embeddings of the training samples")):
        s = sub.add_parser(stage, help=text, description=text[0].upper() + text[1:] + ".")
        s.add_argument("name", help="run name")
        if stage == "index":
            s.add_argument("--nprobe", type=int, default=None,
                           help="approximate (IVF) indices only: lists searched per query from now on; recall@10 is "
                                "measured again and recorded (nothing is rebuilt)")
        runs_root_option(s)
        s.set_defaults(func=stage_command(stage))

    known = list(strategies_base.strategies())
    strategies = ", ".join(known[:-1]) + " or " + known[-1]
    swept = ", ".join(f"{n}: --{s.swept.replace('_', '-')}" for n, s in strategies_base.strategies().items())
    mi = sub.add_parser("mitigate", help="derive a mitigated run from a baseline run (METHOD.md section 4)",
                        description="Create a run derived from --from with one mitigation strategy: the same data, "
                                    "split and injection, lineage recorded in its manifest, scored and evaluated so "
                                    "that the dashboard's Compare page shows memorization and utility before and "
                                    "after. Run the same command again to resume.", epilog=EPILOG)
    parent_and_strategy(mi, strategies)
    mi.add_argument("--name", help="name of the derived run (default: PARENT.STRATEGY-SETTINGS, e.g. demo.noise-all-0.1)")
    mi.add_argument("--replicas", type=int, default=None,
                    help="seeds of f and g the derived run trains (noise, captions; default: the parent's); "
                         "intervals then include training noise")
    runs_root_option(mi); mitigation_arguments(mi)
    mi.set_defaults(func=cmd_mitigate)

    sw = sub.add_parser("sweep", help="run one strategy over a list of values; write a table and a plot",
                        description="Run a strategy from --from once per value of its swept setting ("
                                    f"{swept}) and write a table (CSV, Parquet) and a plot (HTML) of memorization against utility to "
                                    "RUNS_ROOT/_sweeps/NAME/. Runs already done are reused.", epilog=EPILOG)
    parent_and_strategy(sw, strategies)
    sw.add_argument("--values", required=True, help="comma-separated values of the swept setting, e.g. 0.05,0.1,0.2 "
                                                    "(noise), 50,100,200 (removal), 1,2,all (captions)")
    sw.add_argument("--rankings", default=None, help="removal only: comma-separated rankings, one series each, e.g. "
                                                     "multimem,cosine,random (default: --ranking's value)")
    sw.add_argument("--sweep-name", default=None, help="name of the output folder (default PARENT.STRATEGY)")
    runs_root_option(sw); mitigation_arguments(sw)
    sw.set_defaults(func=cmd_sweep)

    r = sub.add_parser("runs", help="list runs with status and headline figures",
                       description="List the runs under --runs-root with status and headline figures.")
    runs_root_option(r)
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
