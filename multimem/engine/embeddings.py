"""The run's clean embeddings, embeddings/{f,g}_{modality}.npy (multimem.modalities), written batch by batch without holding them.

Each process writes the rows it embedded into its own memory-mapped part files (embeddings/.parts/RANK/), so memory
stays flat however many samples there are and no two processes ever write to one file (safe on shared network
folders, which multi-node torchrun jobs already use for the run). After a barrier, rank 0 assembles the parts into
one N × d file per model and modality, in samples.parquet row order, and checks that every row was written once.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from multimem import modalities as modality_table
from multimem.store.atomic import atomic_path

CHUNK = 65536  # rows copied at a time when assembling


def keys(modalities: tuple[str, ...] = modality_table.DEFAULT) -> tuple[str, ...]:
    """The embeddings files of a run with these modalities, for f and g."""
    return tuple(modality_table.embedding_key(tag, m) for tag in ("f", "g") for m in modalities)


class EmbeddingParts:
    """This process's share of the embeddings: `rows` (data rows, any order, each written once per key)."""

    def __init__(self, folder: Path, n_total: int, rows: np.ndarray, rank: int = 0,
                 modalities: tuple[str, ...] = modality_table.DEFAULT) -> None:
        self.folder, self.n_total, self.modalities = Path(folder), n_total, tuple(modalities)
        self.rows = np.asarray(rows, dtype=np.int64)
        self._order = np.argsort(self.rows, kind="stable")
        self._sorted = self.rows[self._order]
        self.part_dir = self.folder / ".parts" / str(rank)
        shutil.rmtree(self.part_dir, ignore_errors=True)  # leftovers of an interrupted attempt
        self.part_dir.mkdir(parents=True)
        np.save(self.part_dir / "rows.npy", self.rows)
        self._arrays: dict[str, np.memmap] = {}
        self.written = dict.fromkeys(keys(self.modalities), 0)

    def add(self, tag: str, rows: np.ndarray, *embeddings: torch.Tensor) -> None:
        """Store one batch of model `tag`'s embeddings of data rows `rows`, one tensor per modality in order."""
        if len(embeddings) != len(self.modalities):
            raise ValueError(f"{len(embeddings)} embeddings given for modalities {', '.join(self.modalities)}")
        pos = np.searchsorted(self._sorted, rows)
        if (pos >= len(self._sorted)).any() or (self._sorted[np.minimum(pos, len(self._sorted) - 1)] != rows).any():
            raise ValueError(f"rows outside this process's share given to {self.part_dir}")
        pos = self._order[pos]
        for modality, emb in zip(self.modalities, embeddings):
            key = modality_table.embedding_key(tag, modality)
            if key not in self._arrays:
                self._arrays[key] = np.lib.format.open_memmap(self.part_dir / f"{key}.npy", mode="w+",
                                                              dtype=np.float32, shape=(len(self.rows), emb.shape[1]))
            self._arrays[key][pos] = emb.detach().cpu().numpy()
            self.written[key] += len(rows)

    def close(self) -> None:
        """Flush this process's part files; it must have written each of its rows once per model and modality."""
        for key, n in self.written.items():
            if n != len(self.rows):
                raise RuntimeError(f"{self.part_dir}: {key} has {n} of {len(self.rows)} rows written")
        for arr in self._arrays.values():
            arr.flush()
        self._arrays.clear()


def assemble(folder: Path, n_total: int, world_size: int = 1,
             modalities: tuple[str, ...] = modality_table.DEFAULT) -> None:
    """Rank 0, after every rank closed its parts: one embeddings/KEY.npy per key (atomic), then the parts go."""
    folder = Path(folder)
    parts = [folder / ".parts" / str(r) for r in range(world_size)]
    rows = [np.load(p / "rows.npy") for p in parts]
    if sum(len(r) for r in rows) != n_total or len(np.unique(np.concatenate(rows))) != n_total:
        raise RuntimeError(f"{folder}/.parts: the ranks' rows do not cover the {n_total} samples exactly once")
    for key in keys(modalities):
        sources = [(r, np.load(p / f"{key}.npy", mmap_mode="r")) for p, r in zip(parts, rows) if len(r)]
        d = sources[0][1].shape[1]
        with atomic_path(folder / f"{key}.npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_total, d))
            for part_rows, part in sources:
                for s in range(0, len(part_rows), CHUNK):
                    out[part_rows[s : s + CHUNK]] = part[s : s + CHUNK]
            out.flush()
            del out
    shutil.rmtree(folder / ".parts")
