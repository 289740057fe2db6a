"""The mitigation commands: `mitigate` and `sweep`, their flags generated from the strategy registry
(multimem.mitigation.base); values are parsed here so that a bad one is a one-line error."""
from __future__ import annotations

import argparse

from multimem.cli.output import print_comparison, print_summary
from multimem.mitigation import base as strategies_base
from multimem.store.runs import Run


def parent_and_strategy(p: argparse.ArgumentParser, strategies: str) -> None:
    """What `mitigate` and `sweep` both start from: the baseline run and the strategy."""
    p.add_argument("--from", dest="parent", required=True, metavar="RUN", help="the parent (baseline) run's name")
    p.add_argument("--strategy", required=True, help=f"the mitigation: {strategies}")


def mitigation_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per strategy setting, grouped under the first strategy that has it (from the registry)."""
    made = {name: p.add_argument_group(f"{s.summary} (--strategy {name})")
            for name, s in strategies_base.strategies().items()}
    for option, o in strategies_base.options().items():
        made[o.strategies[0]].add_argument("--" + option.replace("_", "-"), dest=option, default=None,
                                           metavar="VALUE", help=o.cli_help())


def mitigation_values(args) -> dict:
    """The strategy settings given on the command line, parsed (a bad value names its flag)."""
    return {name: o.setting.parse(getattr(args, name)) for name, o in strategies_base.options().items()
            if getattr(args, name, None) is not None}


def cmd_mitigate(args) -> int:
    from multimem.mitigation import derive

    params = strategies_base.make_params(args.strategy, **mitigation_values(args))
    m = derive.mitigate(args.runs_root, args.parent, args.strategy, params, args.name, args.replicas)
    print_summary(m, args.runs_root)
    print_comparison(m)
    print(f"  folder: {Run(args.runs_root, m['name']).dir}")
    return 0


def cmd_sweep(args) -> int:
    from multimem.mitigation import sweep

    key = strategies_base.get(args.strategy).swept
    values = [strategies_base.parse_option(key, v) for v in args.values.split(",") if v.strip()]
    rankings = [r.strip() for r in args.rankings.split(",") if r.strip()] if args.rankings else None
    paths = sweep.run_sweep(args.runs_root, args.parent, args.strategy, values, mitigation_values(args), rankings,
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
