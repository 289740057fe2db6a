"""Write a synthetic run with 100,000 scored samples for the dashboard benchmark (bench/app_speed.py).

Random unit embeddings (dimension 128, as mm-small), random CMC terms, captions made from emoji-name words, and
images that reuse the Twemoji PNG files (so thumbnails are real images). FAISS indices are built with
multimem.index. The manifest is a valid complete run, without checkpoints (no on-demand scoring).

    python bench/synthetic_run.py [--root FOLDER] [--name synthetic-100k] [--scored 100000]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from multimem.engine import index
from multimem.store.atomic import atomic_numpy, atomic_parquet
from multimem.pipeline.stages import STAGES
from multimem.summary import summarise
from multimem.store.runs import Run, now
from multimem.data.sources.twemoji import ATTRIBUTION, _asset_dir

CATEGORIES = ["Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
              "Activities", "Objects", "Symbols", "Flags"]
WORDS = ("face smiling grinning cat dog red blue green heart hand thumbs up star moon sun fire water tree flower "
         "apple car train ship plane house book pen key lock bell music ball game flag rocket cloud rain snow "
         "clock phone camera light gift cake pizza coffee tea fish bird horse bug leaf mountain city night").split()


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make(root: Path, name: str = "synthetic-100k", scored: int = 100_000, dim: int = 128, seed: int = 0) -> Run:
    rng = np.random.default_rng(seed)
    n_cand = n_indep = int(scored * 0.4)
    n_shared_scored = scored - n_cand - n_indep
    n_shared, n_extra = n_shared_scored * 5 // 2, 10_000
    subset = np.array(["shared"] * n_shared + ["candidate"] * n_cand + ["independent"] * n_indep + ["extra"] * n_extra)
    n = len(subset)
    files = sorted(str(p) for p in _asset_dir().glob("*.png"))[:3000]
    words = np.array(WORDS)
    caps = [" ".join(words[rng.integers(0, len(words), rng.integers(2, 5))]) for _ in range(n)]
    injected = (rng.random(n) < 0.05) & np.isin(subset, ["shared", "candidate", "independent"])
    samples = pd.DataFrame({
        "id": [f"syn{i:06d}" for i in range(n)],
        "subset": subset,
        "caption": caps,
        "captions": [[c, f"{c}, an emoji"] for c in caps],
        "label": np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), n)],
        "image_ref": [files[i % len(files)] for i in range(n)],
        "injected": injected,
        "original_caption": np.where(injected, "the original caption", None),
    })
    samples["category"] = samples["label"]
    samples["subcategory"] = "synthetic"
    samples["base"] = samples["id"]
    samples["skin_tone"] = ""

    run = Run(root, name)
    run.dir.mkdir(parents=True, exist_ok=True)
    atomic_parquet(samples, run.path("samples.parquet"))
    for tag in ("f", "g"):
        for modality in ("image", "text"):
            atomic_numpy(unit(rng, n, dim), run.path("embeddings", f"{tag}_{modality}.npy"))
    train_rows = np.flatnonzero(np.isin(subset, ["shared", "candidate"]))
    for modality in ("image", "text"):
        emb = np.load(run.path("embeddings", f"f_{modality}.npy"))
        index.save(index.build(emb[train_rows]), run.path("index", f"{modality}.faiss"))
    atomic_numpy(train_rows, run.path("index", "rows.npy"))

    shared_pick = np.sort(rng.choice(np.flatnonzero(subset == "shared"), n_shared_scored, replace=False))
    rows = np.concatenate([np.flatnonzero(subset == "candidate"), np.flatnonzero(subset == "independent"), shared_pick])
    m = len(rows)
    own_f, own_g = 1 + 0.3 * rng.random(m, dtype=np.float32), 1 + 0.3 * rng.random(m, dtype=np.float32)
    held_f, held_g = 0.9 + 0.2 * rng.random(m, dtype=np.float32), 0.9 + 0.2 * rng.random(m, dtype=np.float32)
    boost = np.where(subset[rows] == "candidate", 0.05, np.where(subset[rows] == "independent", -0.05, 0.0))
    cmc_f, cmc_g = own_f - held_f + boost.astype(np.float32), own_g - held_g
    raw = cmc_f - cmc_g
    value_range = float(raw.max() - raw.min())
    scores = pd.concat([samples.iloc[rows].reset_index(drop=True), pd.DataFrame({
        "row": rows, "multimem": raw / value_range, "multimem_raw": raw, "cmc_f": cmc_f, "cmc_g": cmc_g,
        "own_f": own_f, "held_f": held_f, "own_g": own_g, "held_g": held_g,
        "sslmem_image": rng.normal(0, 0.02, m).astype(np.float32), "sslmem_text": rng.normal(0, 0.02, m).astype(np.float32),
        "cos_f": rng.uniform(-0.2, 0.6, m).astype(np.float32), "cos_g": rng.uniform(-0.2, 0.6, m).astype(np.float32),
    })], axis=1)
    atomic_parquet(scores, run.path("scores.parquet"))
    steps = np.arange(1, 201)
    atomic_parquet(pd.concat([pd.DataFrame({"model": t, "epoch": steps // 20 + 1, "step": steps,
                                            "loss": 4.5 * np.exp(-steps / 80) + 0.5, "lr": 1e-3}) for t in ("f", "g")]),
                   run.path("history.parquet"))
    util = {k: float(v) for k, v in zip(
        ["image_to_text_R@1", "image_to_text_R@5", "image_to_text_R@10", "text_to_image_R@1", "text_to_image_R@5",
         "text_to_image_R@10", "zero_shot_top1"], rng.uniform(0.05, 0.6, 7))}
    counts = {s: int((subset == s).sum()) for s in ("shared", "candidate", "independent", "extra")}
    run.write_manifest({
        "name": name, "created": now(), "status": "complete", "stages": {s: "done" for s in STAGES},
        "config": {"synthetic": True, "seed": seed, "dim": dim},
        "dataset": {"source": {"kind": "twemoji", "synthetic": True}, "fingerprint": "synthetic", "n_samples": n,
                    "n_injected": int(injected.sum()), "skipped": {"count": 0, "examples": []}, "attribution": ATTRIBUTION},
        "split": {"sizes": counts, "seed": seed},
        "model": {"name": "mm-small"},
        "metric": {"augmentations": 5, "heldout_size": 1000, "text_augmentation": "captions", "seed": seed,
                   "normalisation": {"method": "range", "range": value_range, "min": float(raw.min()),
                                     "max": float(raw.max())}},
        "summary": summarise(scores),
        "utility": {"f": {"n": n_extra, **util}, "g": {"n": n_extra, **{k: v * 0.9 for k, v in util.items()}},
                    "prompt_template": "an emoji from {label}"},
        "index": {"kind": "IndexFlatIP", "metric": "cosine", "vectors": int(len(train_rows)), "model": "f"},
        "lineage": {"parent": None, "mitigation": None}, "timings": {}, "versions": {}, "error": None, "progress": None,
    })
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "multimem-bench-runs")
    p.add_argument("--name", default="synthetic-100k")
    p.add_argument("--scored", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    args = p.parse_args()
    t0 = time.perf_counter()
    run = make(args.root, args.name, args.scored, args.dim)
    print(f"wrote {run.dir} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
