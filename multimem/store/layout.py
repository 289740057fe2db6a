"""Every file of a run directory by name: the one place that spells a path inside a run (DESIGN.md "A run
directory"). `Run(root, name).files` is a RunLayout; code asks it for `files.scores`, `files.checkpoint("f", 1)`,
`files.embedding("f", "image")`, never joins path strings itself.

    manifest.json, progress.json, job.json, job.log, .lock[.PART]
    samples.parquet, scores.parquet, history.parquet
    checkpoints/{f,g}.pt, {f,g}.r{k}.pt        replica 0 is the paper's model; k > 0 are the extra seeds
    checkpoints/work_{f,g}[.r{k}]/              epoch checkpoints while a model trains (resume)
    checkpoints/history.{f,g}.r{k}.parquet      one replica's loss history before it is merged
    embeddings/{f,g}_{modality}.npy             clean embeddings of every sample, samples.parquet row order
    index/{kind}.faiss, index/rows.npy          FAISS indices over f's embeddings (modalities.neighbour_kinds)
    mitigation/...                              what a mitigation did: ranking, rows, reference models
    lists/{name}.json                           the dashboard's tagged lists
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from multimem import modalities

MANIFEST, PROGRESS, JOB_INFO, JOB_LOG = "manifest.json", "progress.json", "job.json", "job.log"


def checkpoint_name(tag: str, replica: int = 0) -> str:
    """f.pt / g.pt for the first replica (the paper's models), f.r1.pt, ... for the others."""
    return f"{tag}.pt" if replica == 0 else f"{tag}.r{replica}.pt"


@dataclass(frozen=True)
class RunLayout:
    dir: Path

    def _at(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    # the run's record
    @property
    def manifest(self) -> Path:
        return self._at(MANIFEST)

    @property
    def progress(self) -> Path:
        return self._at(PROGRESS)

    @property
    def job_info(self) -> Path:
        return self._at(JOB_INFO)

    @property
    def job_log(self) -> Path:
        return self._at(JOB_LOG)

    def lock(self, part: str | None = None) -> Path:
        return self._at(".lock" if part is None else f".lock.{part}")

    # tables
    @property
    def samples(self) -> Path:
        return self._at("samples.parquet")

    @property
    def scores(self) -> Path:
        return self._at("scores.parquet")

    @property
    def history(self) -> Path:
        return self._at("history.parquet")

    # models
    @property
    def checkpoints(self) -> Path:
        return self._at("checkpoints")

    def checkpoint(self, tag: str, replica: int = 0) -> Path:
        return self._at("checkpoints", checkpoint_name(tag, replica))

    def work_dir(self, tag: str, replica: int = 0) -> Path:
        return self._at("checkpoints", f"work_{tag}" if replica == 0 else f"work_{tag}.r{replica}")

    def replica_history(self, tag: str, replica: int) -> Path:
        return self._at("checkpoints", f"history.{tag}.r{replica}.parquet")

    # embeddings and indices
    @property
    def embeddings(self) -> Path:
        return self._at("embeddings")

    def embedding(self, tag: str, modality: str) -> Path:
        return self._at("embeddings", f"{modalities.embedding_key(tag, modality)}.npy")

    @property
    def index_dir(self) -> Path:
        return self._at("index")

    def index(self, kind: str) -> Path:
        return self._at("index", f"{kind}.faiss")

    @property
    def index_rows(self) -> Path:
        return self._at("index", "rows.npy")

    # mitigation
    @property
    def mitigation(self) -> Path:
        return self._at("mitigation")

    @property
    def ranking(self) -> Path:
        return self._at("mitigation", "ranking.parquet")

    @property
    def train_rows_f(self) -> Path:
        return self._at("mitigation", "train_rows_f.npy")

    def regrouped(self, tag: str) -> Path:
        return self._at("mitigation", f"hot_{tag}.parquet")

    def reference(self, j: int) -> Path:
        return self._at("mitigation", "refs", f"ref{j}")

    # curation
    @property
    def lists(self) -> Path:
        return self._at("lists")

    def list(self, name: str) -> Path:
        return self._at("lists", f"{name}.json")
