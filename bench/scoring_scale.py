"""Benchmark: scoring throughput and peak memory at growing scored-set sizes (streamed, synthetic images).

    python bench/scoring_scale.py [--sizes 1000 10000 100000] [--augmentations 2] [--model mm-tiny]

Each size runs in its own process so that its peak resident memory (ru_maxrss) is its own. Images are drawn
procedurally from the sample id (a PNG encoded and decoded per access, as files would be), captions from a small
vocabulary. Prints a Markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import time

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(n: int, augmentations: int, model_name: str) -> dict:
    import tempfile

    import torch
    from PIL import Image

    from multimem.model import factory
    from multimem.data.dataset import PairData, StreamedImages
    from multimem.pipeline.config import RunConfig
    from multimem.pipeline.stages import score_stage
    from multimem.store.runs import Run
    from multimem.engine.score import MetricConfig
    from multimem.data.sources.base import DataSource, Pair

    words = "red green blue small large round square happy sad cat dog car tree house star moon".split()
    extra = 1000  # S_E: the held-out set H, embedded but not scored

    class Synthetic(DataSource):
        kind = "synthetic"

        def _read(self):
            rng = np.random.default_rng(0)
            return [Pair(f"s{i}", str(i), (" ".join(rng.choice(words, 4)),)) for i in range(n + extra)]

        def open_image(self, ref):
            rng = np.random.default_rng(int(ref))
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(buf, "PNG")
            return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    source = Synthetic()
    pairs = source.pairs()
    subset = np.array(["candidate", "independent"] * (n // 2) + ["candidate"] * (n % 2) + ["extra"] * extra)
    data = PairData(pairs=pairs, subset=subset, injected=np.zeros(len(pairs), bool),
                    original_caption=[None] * len(pairs),
                    images=StreamedImages(source, [p.image_ref for p in pairs], 48), workers=1)
    tok = factory.fit_tokenizer(model_name, [p.caption for p in pairs[:2000]])
    data.tokenize(tok)
    cfg = RunConfig(model=model_name, metric=MetricConfig(augmentations=augmentations, batch_size=256))
    with tempfile.TemporaryDirectory() as root:
        run = Run(root, "bench")
        run.update(config=cfg.to_dict())
        for tag, seed in (("f", 0), ("g", 1)):
            factory.save_checkpoint(run.path("checkpoints", f"{tag}.pt"), factory.create(model_name, seed=seed), model_name, tok)
        data.table().to_parquet(run.path("samples.parquet"))
        before = rss_mb()
        t = time.perf_counter()
        score_stage(run, cfg, data)  # scores + clean embeddings of all samples, as a run's score stage
        seconds = time.perf_counter() - t
        table = run.scores()
        assert len(table) == n and np.isfinite(table["multimem_raw"]).all()
        assert np.load(run.path("embeddings", "g_text.npy"), mmap_mode="r").shape[0] == n + extra
        timings = run.manifest()["timings"]
    return {"n": n, "seconds": seconds, "forward": timings["score_forward"], "before_mb": before,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--augmentations", type=int, default=2)
    p.add_argument("--model", default="mm-tiny")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.augmentations, args.model)))
        return
    print(f"model {args.model}, A = {args.augmentations}, f and g, |H| = 1000, streamed images (1 decode worker); "
          "the whole score stage: scores.parquet and the clean embeddings of every sample\n")
    print("| scored samples | seconds | samples/s | s per 1k | forward share | RSS before MB | peak RSS MB | growth MB |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--augmentations", str(args.augmentations),
                              "--model", args.model], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {n:,} | {r['seconds']:.1f} | {n / r['seconds']:.0f} | {r['seconds'] / n * 1000:.2f} | "
              f"{r['forward'] / r['seconds']:.0%} | {r['before_mb']:.0f} | {r['peak_mb']:.0f} | "
              f"{r['peak_mb'] - r['before_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
