"""Benchmark: replicas and calibrated scores on the default demo and on a class-structured dataset.

    python bench/replicas.py [--runs-root /tmp/bench-replicas] [--replicas 3] [--fast] [--only demo|classes]

Runs the default demo preset with --replicas 1 and --replicas K, and the same on "classes": the Twemoji images
with templated captions naming only their category ("a photo of a {category}", three templates) and 3% of the
training captions swapped (ground truth recorded), where the score of a sample is dominated by its class. Prints a
Markdown report: normalised means per subset, |S_S mean|, how well each score ranks the injected mis-captions
(ROC-AUC, precision in the top 5%), the median per-sample standard error, wall time. docs/benchmarks.md keeps the
figures of the reference machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from multimem import summary
from multimem.pipeline import presets
from multimem.pipeline.stages import execute
from multimem.store.runs import Run

TEMPLATES = ("a photo of a {c}", "an image of a {c}", "a {c} picture")


def class_dataset(folder: Path) -> Path:
    """A CSV of the Twemoji images whose captions name only their category."""
    from multimem.data.sources.twemoji import TwemojiSource

    rows = []
    for p in TwemojiSource(skin_tones=True).pairs():
        c = str(p.label).lower().replace("&", "and")
        rows += [{"filepath": p.image_ref, "title": t.format(c=c), "label": p.label} for t in TEMPLATES]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "classes.csv", index=False)
    return folder / "classes.csv"


def configs(root: Path, fast: bool) -> dict:
    demo = presets.demo(fast=fast)
    classes = dataclasses.replace(demo, source={"kind": "csv", "path": str(class_dataset(root / "_data")),
                                                "label_col": "label"}, inject_fraction=0.03)
    if fast:
        classes = dataclasses.replace(classes, split=dataclasses.replace(classes.split, candidate=0.12, extra=0.15))
    return {"demo": demo, "classes": classes}


def report_row(name: str, run: Run, seconds: float) -> dict:
    s, m = run.scores(), run.manifest()
    means = summary.subset_means(s, "multimem")
    row = {"run": name, "replicas": m["metric"].get("replicas", 1), "wall s": round(seconds),
           "S_C": means["candidate"], "S_I": means["independent"], "S_S": means["shared"],
           "|S_S|": abs(means["shared"])}
    if "multimem_se" in s:
        row["median SE (raw)"] = float(s["multimem_se"].median())
        row["median |raw|"] = float(s["multimem_raw"].abs().median())
    diag = m["summary"]["diagnostics"]
    row["gap S_C−S_S"] = summary.Interval.from_dict(diag["gap_candidate_shared"]).text(4)
    row["warnings"] = len(diag["warnings"])
    for col, found in (m["summary"].get("injected_detection") or {}).items():
        if found:
            row[f"AUC {col}"] = found["auc"]
            row[f"P@5% {col}"] = found["precision_at_top"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-root", type=Path, default=Path("/tmp/bench-replicas"))
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--fast", action="store_true", help="the tiny preset (a smoke test of this script)")
    ap.add_argument("--only", choices=["demo", "classes"], default=None)
    args = ap.parse_args()
    rows = []
    for name, cfg in configs(args.runs_root, args.fast).items():
        if args.only and name != args.only:
            continue
        for k in (1, args.replicas):
            run = Run(args.runs_root, f"{name}-r{k}")
            t0 = time.time()
            execute(run, dataclasses.replace(cfg, replicas=k))
            rows.append(report_row(f"{name}", run, time.time() - t0))
            print(pd.DataFrame(rows[-1:]).T.to_string(header=False), flush=True)
    table = pd.DataFrame(rows).set_index(["run", "replicas"]).T
    print("\n" + table.to_string())


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
