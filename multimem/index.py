"""FAISS indices over f's image and text embeddings of the training samples (S_S ∪ S_C).

Exact inner product (IndexFlatIP) on l2-normalised vectors: cosine similarity, no approximation.
Neighbours can be asked for by image, by text, or across modalities (image -> captions, caption -> images).
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from multimem.atomic import atomic_path

KINDS = {  # query modality, index modality
    "image": ("image", "image"),
    "text": ("text", "text"),
    "image_to_text": ("image", "text"),
    "text_to_image": ("text", "image"),
}


def build(vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def save(index: faiss.Index, path: Path) -> None:
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


class NeighbourIndex:
    """Neighbours of any sample of a run (scored or not) among the training samples, through saved indices."""

    def __init__(self, index: dict[str, faiss.Index], index_rows: np.ndarray, embeddings: dict[str, np.ndarray]):
        self.index = index  # modality -> faiss index over the training rows
        self.index_rows = index_rows  # position in the index -> row of the samples table
        self.embeddings = embeddings  # modality -> all samples' f embeddings (row order of the samples table)

    @classmethod
    def from_run_dir(cls, folder: Path) -> "NeighbourIndex":
        folder = Path(folder)
        return cls(
            {m: load(folder / "index" / f"{m}.faiss") for m in ("image", "text")},
            np.load(folder / "index" / "rows.npy"),
            {m: np.load(folder / "embeddings" / f"f_{m}.npy", mmap_mode="r") for m in ("image", "text")},
        )

    def search(self, row: int, kind: str = "image", k: int = 8, exclude_self: bool = True) -> list[tuple[int, float]]:
        """(row, cosine similarity) of the k nearest training samples to sample `row`, best first."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        query_mod, index_mod = KINDS[kind]
        q = np.ascontiguousarray(self.embeddings[query_mod][row : row + 1], dtype=np.float32)
        sims, idx = self.index[index_mod].search(q, k + 1)
        out = [(int(self.index_rows[i]), float(s)) for i, s in zip(idx[0], sims[0]) if i >= 0]
        if exclude_self:
            out = [(r, s) for r, s in out if r != row]
        return out[:k]
