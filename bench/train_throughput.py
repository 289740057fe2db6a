"""Benchmark: training throughput of this project's loop against open_clip_train, same config, data and batch.

    python bench/train_throughput.py [--model mm-small] [--batch-size 128] [--limit 1500]

Makes a split-only run of the Twemoji data, exports f's training list as open_clip CSV (one row per caption) and
the model as a `local-dir:` folder (open_clip's full vocabulary), then trains one epoch of f with
`python -m open_clip_train.main` and with `multimem.train.train` (full vocabulary, and the compact vocabulary the
shipped configs use), each on the same pairs and batch size. Pairs per second are measured over the steps after
the first (warm-up) ones. Prints a Markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multimem.model import factory
from multimem.pipeline import presets
from multimem.interop.openclip_train import export_split
from multimem.pipeline.stages import execute
from multimem.store.runs import Run
from multimem.data.splits import TRAIN_F
from multimem.model.tokenizer import CompactTokenizer
from multimem.engine.train import TrainConfig, train


def ours(data, rows, model_name, tok, batch, work: Path) -> float:
    steps = []

    def on_step(step, total):
        steps.append(time.perf_counter())

    train(data, rows, model_name, tok, TrainConfig(epochs=1, batch_size=batch), work, desc="ours", on_step=on_step)
    skip = min(3, len(steps) - 2)
    return (len(steps) - 1 - skip) * batch / (steps[-1] - steps[skip])


def open_clip_train(csv: Path, model_dir: Path, batch: int, logs: Path) -> float:
    cmd = [sys.executable, "-m", "open_clip_train.main", "--train-data", str(csv), "--dataset-type", "csv",
           "--csv-img-key", "filepath", "--csv-caption-key", "title", "--csv-separator", ",",
           "--model", f"local-dir:{model_dir}", "--batch-size", str(batch), "--epochs", "1", "--lr", "0.002",
           "--warmup", "10", "--workers", "1", "--device", "cpu", "--logs", str(logs), "--name", "f",
           "--report-to", "", "--log-every-n-steps", "1", "--save-frequency", "0", "--seed", "0"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    rates = [float(x) for x in re.findall(r"Batch \(t\): [\d.]+, ([\d.]+)/s,", out.stdout + out.stderr)]
    if len(rates) < 3:
        raise RuntimeError("open_clip_train did not report its speed:\n" + (out.stdout + out.stderr)[-3000:])
    return float(np.mean(rates[3:] if len(rates) > 5 else rates[1:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="mm-small")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=1500, help="Twemoji samples in the split-only run")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="multimem-train-bench-"))
    cfg = presets.demo(fast=False)
    cfg = dataclasses.replace(cfg, model=args.model, source={"kind": "twemoji", "skin_tones": True, "limit": args.limit},
                              inject_fraction=0.0)
    run = Run(folder / "runs", "throughput")
    execute(run, cfg, stages=())
    export_split(run, "csv", folder / "export", all_captions=False)  # one caption per image: the same pairs as ours

    from multimem.data.dataset import build
    from multimem.model.factory import store_size
    from multimem.data.sources import open_source

    data = build(open_source(cfg.source), cfg.split, cfg.split_seed, 0.0, 0, store_size(args.model))
    rows = data.rows(*TRAIN_F)
    full = CompactTokenizer(args.model, factory.context_length(args.model), None)
    compact = factory.fit_tokenizer(args.model, [c for p_ in data.pairs for c in p_.captions])

    them = open_clip_train(folder / "export" / "f_train.csv", folder / "export" / "model", args.batch_size, folder / "logs")
    # ours with open_clip's full vocabulary: the same architecture open_clip_train trains
    full_cfg = folder / "export" / "model"
    data.tokenize(full)
    ours_full = ours(data, rows, f"local-dir:{full_cfg}", full, args.batch_size, folder / "ours_full")
    data.tokenize(compact)
    ours_compact = ours(data, rows, args.model, compact, args.batch_size, folder / "ours_compact")
    print(f"{len(rows)} training pairs, batch {args.batch_size}, model {args.model}, {torch.get_num_threads()} threads\n")
    print("| trainer | pairs/s | ratio to open_clip_train |\n|---|---|---|")
    print(f"| open_clip_train (full vocabulary) | {them:.0f} | 1.00 |")
    print(f"| multimem.train (full vocabulary, same architecture) | {ours_full:.0f} | {ours_full / them:.2f} |")
    print(f"| multimem.train (compact vocabulary, as shipped) | {ours_compact:.0f} | {ours_compact / them:.2f} |")


if __name__ == "__main__":
    main()
