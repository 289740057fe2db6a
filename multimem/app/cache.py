"""The dashboard's data access, cached once per server process and shared by every page and session.

Tables, indices and models are st.cache_resource (one shared object, never copied or reloaded per rerun; callers
treat them as read-only); small derived values are st.cache_data. Each loader is keyed by the run name and the
modification time of its file, so a run that is rescored is read again and an unchanged one never is.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from multimem.app import cards, columns, compare, select
from multimem.data.images import ImageError, open_image
from multimem.store.runs import DEFAULT_ROOT, Run, list_runs


def runs_root() -> Path:
    """$MULTIMEM_RUNS, read at every call (tests and the Runs page's jobs set it), else runs/."""
    return Path(os.environ.get("MULTIMEM_RUNS") or DEFAULT_ROOT)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def run(name: str) -> Run:
    return Run(runs_root(), name)


def file_key(name: str, *parts: str) -> tuple[str, str, float]:
    """(runs root, run name, modification time of a file of the run): the key of every loader below, so that a run
    whose file is rewritten is read again and an unchanged one never is."""
    r = run(name)
    return str(r.root), name, _mtime(r.path(*parts))


@st.cache_data(ttl=3, show_spinner=False)
def _run_table(root: str) -> pd.DataFrame:
    return list_runs(root)


def run_table() -> pd.DataFrame:
    """Every run folder with its status and headline figures (re-read every few seconds: jobs change it).

    Folders that are not usable runs are left out; skipped_runs() says which and why."""
    return _run_table(str(runs_root()))


def skipped_runs() -> list[str]:
    """One line per folder of the runs root left out of run_table() ("NAME: why")."""
    return list(run_table().attrs.get("skipped", []))


def scored_runs() -> list[str]:
    """Runs the analysis pages can show: those with a scores table."""
    table = run_table()
    if table.empty:
        return []
    return [n for n in table["name"] if run(n).path("scores.parquet").is_file()]


def status(name: str) -> str:
    """complete / failed / running / incomplete as `multimem runs` says it: a run whose manifest says running
    while no job holds its lock was stopped, and is incomplete."""
    table = run_table()
    if not table.empty and name in set(table["name"]):
        return str(table.loc[table["name"] == name, "status"].iloc[0])
    return run(name).status(manifest(name))


def unscored_runs() -> dict[str, tuple[str, str | None]]:
    """Runs that exist but have no scores table yet: name -> (status, the manifest's error or None)."""
    table = run_table()
    if table.empty:
        return {}
    scored = set(scored_runs())
    out = {}
    for name, state in zip(table["name"], table["status"]):
        if name not in scored:
            error = manifest(name).get("error") if state == "failed" else None
            out[name] = (state, None if error is None else str(error))
    return out


def has_injected(name: str) -> bool:
    """Whether the run has injected mis-captions (its manifest counts some or its scores table flags some)."""
    return columns.has_injected(manifest(name), scores(name))


@st.cache_data(show_spinner=False, max_entries=64)
def _manifest(root: str, name: str, mtime: float) -> dict:
    return Run(root, name).manifest()


def manifest(name: str) -> dict:
    return _manifest(*file_key(name, "manifest.json"))


@st.cache_resource(show_spinner="Reading the scores table…", max_entries=6)
def _scores(root: str, name: str, mtime: float) -> pd.DataFrame:
    return Run(root, name).scores()


def scores(name: str) -> pd.DataFrame:
    """The run's scores table (shared object: do not modify)."""
    return _scores(*file_key(name, "scores.parquet"))


@st.cache_resource(show_spinner=False, max_entries=6)
def _search_text(root: str, name: str, mtime: float) -> pd.Series:
    return select.search_text(_scores(root, name, mtime))


def scores_search_text(name: str) -> pd.Series:
    """Lower-case captions of each scored row, built on the first caption search only."""
    return _search_text(*file_key(name, "scores.parquet"))


@st.cache_resource(show_spinner=False, max_entries=6)
def _samples(root: str, name: str, mtime: float) -> pd.DataFrame:
    table = Run(root, name).samples()
    return table.set_index("id", drop=False)


def samples(name: str) -> pd.DataFrame:
    """Every sample of the run indexed by id; its position is the `row` the embeddings and indices use."""
    return _samples(*file_key(name, "samples.parquet"))


@st.cache_resource(show_spinner=False, max_entries=6)
def _scores_by_row(root: str, name: str, mtime: float) -> pd.DataFrame:
    return _scores(root, name, mtime).set_index("row", drop=False)


def scores_by_row(name: str) -> pd.DataFrame:
    return _scores_by_row(*file_key(name, "scores.parquet"))


@st.cache_data(show_spinner=False, max_entries=16)
def _history(root: str, name: str, mtime: float) -> pd.DataFrame:
    return Run(root, name).history()


def history(name: str) -> pd.DataFrame:
    return _history(*file_key(name, "history.parquet"))


@st.cache_resource(show_spinner="Loading the neighbour indices…", max_entries=4)
def _neighbours(root: str, name: str, mtime: float):
    from multimem.engine.index import IVF_NPROBE, NeighbourIndex

    r = Run(root, name)
    return NeighbourIndex.from_run_dir(r.dir, (r.manifest().get("index") or {}).get("nprobe", IVF_NPROBE))


def neighbours(name: str):
    """The run's FAISS indices over f's embeddings, or None when the run has none yet."""
    key = file_key(name, "index", "rows.npy")
    return None if key[2] == 0.0 else _neighbours(*key)


@st.cache_resource(show_spinner="Loading f and g…", max_entries=2)
def _scorer(root: str, name: str, mtime: float):
    from multimem.engine.pair_score import Scorer

    r = Run(root, name)
    return Scorer.from_run_dir(r.dir, r.manifest(), r.samples())


def scorer(name: str):
    """f, g, the tokenizer and H of a run, for on-demand scoring."""
    r = run(name)
    return _scorer(str(r.root), name, _mtime(r.path("checkpoints", "f.pt")) + _mtime(r.path("checkpoints", "g.pt")))


@st.cache_data(show_spinner=False, max_entries=20_000)
def thumbnail(ref: str, size: int = 128) -> str:
    """A data URI of the image at `ref` (a path or shard#member from the run's own table), or a placeholder."""
    try:
        return cards.thumbnail_uri(open_image(ref), size)
    except (ImageError, OSError):
        return cards.PLACEHOLDER


@st.cache_data(show_spinner=False, max_entries=2_000)
def large_image(ref: str, size: int = 320):
    """The image enlarged for the Sample page (emoji are 72 px; the browser's own upscaling blurs them)."""
    from PIL import Image

    img = open_image(ref)
    scale = size / max(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS) if scale > 1 else img


@st.cache_resource
def jobs() -> dict[str, subprocess.Popen]:
    """Background jobs this server started, by run name (the Popen objects let us read their exit codes)."""
    return {}


def subset_values(name: str, subset: str, column: str = "multimem") -> np.ndarray:
    table = scores(name)
    return table.loc[table["subset"] == subset, column].to_numpy(float)


# ---- how sure the figures are (multimem.summary): the manifest's when it has them, else computed once per table

@st.cache_data(show_spinner="Computing the diagnostics…", max_entries=16)
def _diagnostics(root: str, name: str, mtime: float) -> dict:
    from multimem import summary

    return summary.diagnostics(_scores(root, name, mtime))


def diagnostics(name: str) -> dict:
    """summary.diagnostics of the manifest, or computed from the scores table for a run scored before they were
    recorded (or whose manifest lost them)."""
    stored = (manifest(name).get("summary") or {}).get("diagnostics")
    if isinstance(stored, dict) and stored.get("offset"):
        return stored
    return _diagnostics(*file_key(name, "scores.parquet"))


@st.cache_data(show_spinner=False, max_entries=16)
def _subset_intervals(root: str, name: str, mtime: float) -> dict:
    from multimem import summary

    return {s: i.to_dict() for s, i in summary.subset_intervals(_scores(root, name, mtime)).items()}


def subset_intervals(name: str) -> dict:
    """Raw subset means with their 95% intervals (as Interval dicts): summary.intervals_raw, else computed."""
    stored = (manifest(name).get("summary") or {}).get("intervals_raw")
    if isinstance(stored, dict) and stored:
        return stored
    return _subset_intervals(*file_key(name, "scores.parquet"))


@st.cache_data(show_spinner="Computing the changes between the runs…", max_entries=32)
def _changes(root: str, a: str, mtime_a: float, b: str, mtime_b: float) -> dict:
    return compare.subset_changes(_scores(root, a, mtime_a), _scores(root, b, mtime_b))


def subset_changes(a: str, b: str) -> dict:
    """Per scored subset: the raw mean's change from run a to run b with its 95% interval (compare.subset_changes)."""
    root, _, mtime_a = file_key(a, "scores.parquet")
    return _changes(root, a, mtime_a, b, file_key(b, "scores.parquet")[2])
