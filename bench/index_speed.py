"""Benchmark: neighbour search latency, memory and recall, exact (flat) against IVF, by index size.

    python bench/index_speed.py [--sizes 100000 1000000] [--dims 128 512] [--queries 200] [--run runs/demo]

Random unit vectors with some cluster structure (mixtures around centroids, as embeddings have), one query at a
time as the dashboard asks. A second table gives the IVF index's recall@10 by nprobe on harder data: unit vectors
without any cluster structure (IVF's worst case) and, with --run, a real run's f image and text embeddings.
Prints Markdown tables for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from multimem.engine import index


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n // 500), d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def uniform(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_by_nprobe(name: str, x: np.ndarray, n_queries: int, nprobes=(8, 32, 128)) -> None:
    """IVF (as index.plan builds it above EXACT_MAX) against exact search, queries taken from the data itself."""
    q = x[np.random.default_rng(1).choice(len(x), min(n_queries, len(x)), replace=False)]
    exact = index.build(x, index.plan(len(x), exact_max=len(x))).search(q, 11)[1][:, 1:]  # the query itself first
    params = index.plan(len(x), exact_max=0)
    ivf = index.build(x, params)
    cells = []
    for nprobe in nprobes:
        ivf.nprobe = nprobe
        got = ivf.search(q, 11)[1][:, 1:]
        cells.append(f"{np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact)]):.3f}")
    print(f"| {name} | {len(x):,} × {x.shape[1]} | {params['nlist']} | " + " | ".join(cells) + " |", flush=True)


def latency_ms(idx, queries: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    out = []
    t = time.perf_counter()
    for q in queries:
        out.append(idx.search(q[None], k)[1][0])
    return (time.perf_counter() - t) / len(queries) * 1000, np.array(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--run", type=Path, default=None, help="also measure IVF recall on this run's f embeddings")
    args = p.parse_args()
    print("| vectors | dim | index | build s | file MB | query ms (k=10) | recall@10 vs exact |")
    print("|---|---|---|---|---|---|---|")
    folder = Path(tempfile.mkdtemp(prefix="multimem-index-"))
    for n in args.sizes:
        for d in args.dims:
            x = clustered(n, d)
            queries = x[np.random.default_rng(1).choice(n, args.queries, replace=False)] + 0.05
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            exact_ids = None
            for params in (index.plan(n, exact_max=n), index.plan(n, exact_max=0)):
                t = time.perf_counter()
                built = index.build(x, params)
                build_s = time.perf_counter() - t
                path = folder / f"{n}_{d}_{params['kind']}.faiss"
                index.save(built, path)
                del built
                loaded = index.load(path)  # memory-mapped, as the app loads it
                faiss.omp_set_num_threads(1)  # as NeighbourIndex does for single queries
                ms, ids = latency_ms(loaded, queries)
                faiss.omp_set_num_threads(os.cpu_count() or 1)
                if exact_ids is None:
                    exact_ids, recall = ids, 1.0
                else:
                    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)])
                size_mb = os.path.getsize(path) / 2**20
                name = params["kind"] + (f" (nlist {params['nlist']}, nprobe {params['nprobe']})" if "nlist" in params else "")
                print(f"| {n:,} | {d} | {name} | {build_s:.1f} | {size_mb:.0f} | {ms:.2f} | {recall:.3f} |", flush=True)
                path.unlink()
    print("\n| data | vectors | nlist | recall@10 nprobe 8 | nprobe 32 (default) | nprobe 128 |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes[:1]:
        recall_by_nprobe("clustered (as above)", clustered(n, args.dims[0]), args.queries)
        recall_by_nprobe("uniform on the sphere (no structure)", uniform(n, args.dims[0]), args.queries)
    if args.run:
        for modality in ("image", "text"):
            emb = np.load(args.run / "embeddings" / f"f_{modality}.npy")
            recall_by_nprobe(f"{args.run.name}: f {modality} embeddings", emb, args.queries)


if __name__ == "__main__":
    main()
