"""Benchmark: the default Twemoji demo end to end, and what scoring costs on top of the bare forward passes.

    python bench/demo_end_to_end.py [--runs-root /tmp/bench-runs] [--fast]

Prints a Markdown report (stage times, mean scores per subset, how well the injected mis-captions are found,
scoring overhead); docs/benchmarks.md keeps the figures of the reference machine.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from multimem.model import augment
from multimem.model import factory
from multimem.pipeline import presets
from multimem.data.dataset import build
from multimem.model.factory import store_size
from multimem.pipeline.config import RunConfig
from multimem.pipeline.training import load_pair
from multimem.store.runs import Run
from multimem.engine.score import heldout_rows, score, scored_rows, view_captions, view_draws
from multimem.data.sources import open_source


def bare_forward_seconds(f, g, data, cfg: RunConfig) -> float:
    """The forward passes scoring makes, on inputs built beforehand: per batch the A views' images, the clean image
    and the batch's distinct captions (views' and first); then H's clean images and first captions."""
    mcfg = cfg.metric
    rows = torch.as_tensor(scored_rows(data, mcfg))
    held = torch.as_tensor(heldout_rows(data, mcfg))
    mean, std, size = factory.image_norm(f)
    a = mcfg.augmentations
    per_batch = max(1, mcfg.batch_size // a)
    params, choice = view_draws(data, rows.numpy(), mcfg)
    view_inputs, token_batches = [], []
    clean = lambda r: augment.normalise(augment.clean_view(data.images[r], size), mean, std)
    for start in range(0, len(rows), per_batch):
        batch = rows[start : start + per_batch]
        p = params[start : start + per_batch].flatten(0, 1)
        view_inputs.append(augment.normalise(augment.apply_views(data.images[batch].repeat_interleave(a, 0), p, size), mean, std))
        view_inputs.append(clean(batch))
        with_first = torch.cat([choice[start : start + per_batch], torch.zeros(len(batch), 1, dtype=choice.dtype)], 1)
        token_batches.append(data.tokens_at(view_captions(data, batch.numpy(), with_first)[0]))
    clean_inputs = [clean(held[i : i + 512]) for i in range(0, len(held), 512)]
    clean_tokens = [data.caption_tokens(held[i : i + 512]) for i in range(0, len(held), 512)]
    t0 = time.perf_counter()
    with torch.no_grad():
        for model in (f, g):
            for x in view_inputs + clean_inputs:
                model.encode_image(x, normalize=True)
            for t in token_batches + clean_tokens:
                model.encode_text(t, normalize=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs-root", type=Path, default=None, help="where to write the run (default: a temp folder)")
    p.add_argument("--fast", action="store_true", help="the tiny test preset instead of the default demo")
    args = p.parse_args()
    root = args.runs_root or Path(tempfile.mkdtemp(prefix="multimem-bench-"))
    name = "bench-demo"
    shutil.rmtree(root / name, ignore_errors=True)
    cmd = [sys.executable, "-m", "multimem", "demo", "--name", name, "--runs-root", str(root)] + (["--fast"] if args.fast else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    run = Run(root, name)
    m = run.manifest()
    cfg = RunConfig.from_dict(m["config"])

    print(f"## Demo end to end ({'fast' if args.fast else 'default'} preset, {torch.get_num_threads()} threads)\n")
    print(f"- wall clock of `multimem demo` (process start to exit, imports included): **{wall:.1f} s**")
    for stage, seconds in m["timings"].items():
        print(f"- {stage}: {seconds:.1f} s")
    s = m["summary"]
    print("\n| subset | mean normalised MultiMem | mean raw |\n|---|---|---|")
    for subset in ("candidate", "independent", "shared"):
        print(f"| {subset} | {s['mean_multimem'][subset]:+.3f} | {s['mean_multimem_raw'][subset]:+.3f} |")
    if "injected_auc" in s:
        print(f"\nInjected mis-captions among candidates ({s['injected_share']:.1%} of S_C): "
              f"ROC-AUC **{s['injected_auc']:.3f}**, precision at the top 5% **{s['injected_precision_at_5pct']:.3f}**")
    for tag in ("f", "g"):
        u = m["utility"][tag]
        print(f"\n{tag}: i→t R@1/5/10 {u['image_to_text_R@1']:.3f}/{u['image_to_text_R@5']:.3f}/{u['image_to_text_R@10']:.3f}, "
              f"t→i R@1/5/10 {u['text_to_image_R@1']:.3f}/{u['text_to_image_R@5']:.3f}/{u['text_to_image_R@10']:.3f}, "
              f"zero-shot {u.get('zero_shot_top1', float('nan')):.3f} (majority class {u.get('zero_shot_chance', float('nan')):.3f})")

    # scoring cost against the bare forward passes, measured back to back in this process
    source = open_source(cfg.source)
    data = build(source, cfg.split, cfg.split_seed, cfg.inject_fraction, cfg.inject_seed, store_size(cfg.model), cfg.workers)
    f, g, tok = load_pair(run, cfg)
    data.tokenize(tok)
    bare = min(bare_forward_seconds(f, g, data, cfg) for _ in range(2))
    timings = []
    for _ in range(2):
        t = time.perf_counter()
        score(f, g, data, cfg.metric)
        timings.append(time.perf_counter() - t)
    pipeline = min(timings)
    n = len(scored_rows(data, cfg.metric))
    print(f"\n## Scoring cost\n\n{n} scored samples (S_C, S_I, S_S sample), A = {cfg.metric.augmentations}, "
          f"|H| = {len(heldout_rows(data, cfg.metric))}, f and g:\n")
    print(f"- scoring pipeline: {pipeline:.2f} s (best of 2)")
    print(f"- bare forward passes over the same inputs: {bare:.2f} s (best of 2)")
    print(f"- overhead of the pipeline: **{(pipeline / bare - 1) * 100:+.1f}%**")


if __name__ == "__main__":
    main()
