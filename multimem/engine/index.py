"""FAISS indices over f's embeddings of the training samples (S_S ∪ S_C), one per modality of the run.

Inner product on l2-normalised vectors (cosine similarity): exact (IndexFlatIP) up to EXACT_MAX vectors, IVF above.
Neighbours can be asked for within a modality (by image, by text) or across any ordered pair of modalities (image
-> captions, caption -> images): the kinds of multimem.modalities.neighbour_kinds.
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from multimem import modalities as modality_table
from multimem.store.atomic import atomic_path
from multimem.store.layout import RunLayout

KINDS = modality_table.neighbour_kinds(modality_table.DEFAULT)  # an image-text run's: kind -> (query, indexed)


# Up to this many vectors an exact flat index answers a query in a few milliseconds on a laptop CPU
# (docs/benchmarks.md: about 5 ms at 100k × 128); above it, an IVF index keeps queries fast at a small recall cost.
EXACT_MAX = 200_000
IVF_NPROBE = 32


def plan(n: int, exact_max: int | None = None) -> dict:
    """The index kind and parameters for n vectors (recorded in the run manifest); exact_max: EXACT_MAX."""
    if n <= (EXACT_MAX if exact_max is None else exact_max):
        return {"kind": "IndexFlatIP", "exact": True}
    nlist = int(4 * np.sqrt(n))
    return {"kind": "IndexIVFFlat", "exact": False, "nlist": nlist, "nprobe": IVF_NPROBE,
            "train_size": int(min(n, 40 * nlist))}  # faiss asks for at least 39 points per list


def build(vectors: np.ndarray, params: dict | None = None) -> faiss.Index:
    """Inner-product index over l2-normalised vectors: exact (flat) or IVF, as `plan` says."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    params = params or plan(len(vectors))
    d = vectors.shape[1]
    if params["kind"] == "IndexFlatIP":
        index = faiss.IndexFlatIP(d)
    else:
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, params["nlist"], faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), size=params["train_size"], replace=False)]
        index.train(sample)
        index.nprobe = params["nprobe"]
    index.add(vectors)
    return index


def recall_at_k(index: faiss.Index, vectors: np.ndarray, queries: int = 200, k: int = 10, seed: int = 0) -> float:
    """Recall@k of `index` against exact search over the same `vectors`, for a seeded sample of them as queries.

    The exact answer is a brute-force inner product in chunks, so memory stays at one chunk of scores.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    q = vectors[np.sort(np.random.default_rng(seed).choice(len(vectors), min(queries, len(vectors)), replace=False))]
    k = min(k, len(vectors))
    best_s, best_i = np.full((len(q), k), -np.inf, np.float32), np.zeros((len(q), k), np.int64)
    for start in range(0, len(vectors), 16384):  # each chunk's own top k, merged with the best so far
        sims = q @ vectors[start : start + 16384].T
        top = np.argpartition(-sims, min(k, sims.shape[1]) - 1, axis=1)[:, :k]
        s = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], 1)
        i = np.concatenate([best_i, top + start], 1)
        keep = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
    got = index.search(np.ascontiguousarray(q), k)[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, best_i)]))


def save(index: faiss.Index, path: Path) -> None:
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load(path: Path, nprobe: int = IVF_NPROBE) -> faiss.Index:
    """Memory-mapped and read-only: processes (and app sessions) share the pages instead of copying the index."""
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    if hasattr(index, "nprobe"):
        faiss.extract_index_ivf(index).nprobe = nprobe
    return index


class NeighbourIndex:
    """Neighbours of any sample of a run (scored or not) among the training samples, through saved indices."""

    def __init__(self, index: dict[str, faiss.Index], index_rows: np.ndarray, embeddings: dict[str, np.ndarray]):
        # one query at a time: OpenMP threads cost more than they bring (8× slower on a busy 2-core machine)
        faiss.omp_set_num_threads(1)
        self.index = index  # modality -> faiss index over the training rows
        self.index_rows = index_rows  # position in the index -> row of the samples table
        self.embeddings = embeddings  # modality -> all samples' f embeddings (row order of the samples table)
        self.kinds = modality_table.neighbour_kinds(tuple(index))

    @classmethod
    def from_run_dir(cls, folder: Path, nprobe: int = IVF_NPROBE,
                     modalities: tuple[str, ...] = modality_table.DEFAULT) -> "NeighbourIndex":
        """`nprobe`: the run manifest's index.nprobe, for approximate indices; `modalities`: the run's."""
        files = RunLayout(Path(folder))
        return cls(
            {m: load(files.index(m), nprobe) for m in modalities},
            np.load(files.index_rows),
            {m: np.load(files.embedding("f", m), mmap_mode="r") for m in modalities},
        )

    def search(self, row: int, kind: str = "image", k: int = 8, exclude_self: bool = True) -> list[tuple[int, float]]:
        """(row, cosine similarity) of the k nearest training samples to sample `row`, best first."""
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {', '.join(self.kinds)}, got {kind!r}")
        query_mod, index_mod = self.kinds[kind]
        q = np.ascontiguousarray(self.embeddings[query_mod][row : row + 1], dtype=np.float32)
        sims, idx = self.index[index_mod].search(q, k + 1)
        out = [(int(self.index_rows[i]), float(s)) for i, s in zip(idx[0], sims[0]) if i >= 0]
        if exclude_self:
            out = [(r, s) for r, s in out if r != row]
        return out[:k]
