"""Checks of a new run's settings and data before any work starts: the same for the CLI and the dashboard.

`check_data(cfg)` reads the data source the way training will (the source classes' own reading: a missing file,
an unreadable CSV, a missing column, an empty or damaged shard, a malformed COCO file all raise their DataError)
and checks that the usable samples fill the requested split (multimem.splits). The settings themselves (model name,
augmentations, inject fraction) are checked by `multimem.cli.build_config`, which every command builds its
RunConfig with; `check_argv` runs both on a command line, which is how the dashboard checks a job before it
starts it. Nothing here writes a file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from multimem.data.sources.base import DataError


@dataclass
class DataCheck:
    """What the data check found: usable samples, skipped ones (with the first reason) and the split's sizes."""

    samples: int
    skipped: int
    first_skipped: str | None
    sizes: dict[str, int]

    def text(self) -> str:
        out = f"{self.samples:,} usable samples"
        if self.skipped:
            out += f", {self.skipped:,} skipped (first: {self.first_skipped})"
        return out + "; split " + ", ".join(f"{k} {v:,}" for k, v in self.sizes.items())


def check_data(cfg) -> DataCheck:
    """Read `cfg.source` (a RunConfig's) and check the split fits; raises DataError naming the file, column or size.

    Images are not decoded (that happens while the run prepares its data); a file that exists but cannot be
    decoded is skipped then and counted in the manifest, as for any run."""
    from multimem.data.sources import open_source

    source = open_source(cfg.source)
    pairs = source.pairs()
    first = source.skipped[0].reason if source.skipped else None
    if not pairs:
        why = f" ({len(source.skipped)} skipped; the first: {first})" if source.skipped else ""
        raise DataError(f"{describe_source(cfg.source)}: no usable samples{why}")
    sizes = cfg.split.counts(len(pairs))  # DataError: too few samples for the requested sizes
    return DataCheck(len(pairs), len(source.skipped), first, sizes)


def describe_source(spec: dict) -> str:
    kind = spec.get("kind")
    where = spec.get("path") or spec.get("paths") or spec.get("annotations")
    return f"{kind} data {where}" if where else f"{kind} data"


def check_argv(argv: list[str]) -> tuple[object, DataCheck]:
    """A `multimem train|demo|split ...` command line (without the python and -m multimem in front) checked as
    the CLI would parse it, then its data; returns (RunConfig, DataCheck). Raises DataError with the CLI's
    message; a command line argparse rejects is a DataError with argparse's message."""
    import argparse
    import contextlib
    import io

    from multimem import cli
    from multimem.pipeline import presets

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = cli.parser().parse_args(argv)
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        raise DataError(lines[-1].split("error: ", 1)[-1] if lines else "invalid options") from None
    if not isinstance(args, argparse.Namespace) or args.command not in ("train", "demo", "split"):
        raise DataError("only train, demo and split commands create runs")
    cfg = cli.build_config(args, presets.demo(fast=bool(getattr(args, "fast", False))))
    return cfg, check_data(cfg)


def is_new(root: Path | str, name: str) -> bool:
    """Whether no run of that name exists yet (a resumed run was checked when it was made)."""
    from multimem.store.runs import Run

    return not Run(root, name).exists()
