"""The run directory: one folder per run with everything the app needs (DESIGN.md "A run directory").

    manifest.json        settings, status, stages done, utility, summary, timings, versions, lineage
    samples.parquet      every usable sample: id, subset, captions, label, image_ref, injected, metadata
    scores.parquet       one row per scored sample (S_C, S_I, a sample of S_S), joined with its sample columns
    history.parquet      training loss per step for f and g
    checkpoints/f.pt     open_clip-format checkpoints (+ token_map), and checkpoints/work_{f,g}/ while training
    embeddings/{f,g}_{image,text}.npy   clean embeddings of every sample (samples.parquet row order)
    index/{image,text}.faiss, index/rows.npy   FAISS indices over f's embeddings of S_S ∪ S_C
A run is complete only when manifest["status"] == "complete", which is written last.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from multimem.store.atomic import atomic_write_json
from multimem.store.layout import RunLayout
from multimem.store.manifest import Manifest
from multimem.errors import RunError

DEFAULT_ROOT = Path(os.environ.get("MULTIMEM_RUNS", "runs"))
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RUNNING, FAILED, COMPLETE, INCOMPLETE = "running", "failed", "complete", "incomplete"
STAGES = ("train_f", "train_g", "score", "evaluate", "index")




def check_name(name: str) -> str:
    """Run names become folder names: letters, digits, '.', '_', '-' only (no separators, no '..')."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise RunError(
            f"invalid run name {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Run:
    def __init__(self, root: Path | str, name: str) -> None:
        self.root = Path(root)
        self.name = check_name(name)
        self.dir = self.root / name
        self.files = RunLayout(self.dir)  # every file of the run by name
        resolved_root = self.root.resolve()
        if self.dir.exists() and resolved_root not in self.dir.resolve().parents:
            raise RunError(f"run {name!r} points outside the runs folder {self.root}; refusing to use it")

    # paths
    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    @property
    def manifest_path(self) -> Path:
        return self.files.manifest

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    # manifest
    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"run {self.name!r} not found in {self.root} (no manifest.json)") from None
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.manifest_path}: not valid JSON ({exc})") from None

    def info(self) -> Manifest:
        """The manifest through its typed accessors."""
        return Manifest(self.manifest())

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        manifest["updated"] = now()
        atomic_write_json(self.manifest_path, manifest)

    def update(self, **fields: Any) -> dict[str, Any]:
        m = self.manifest() if self.exists() else {"name": self.name, "created": now()}
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(m.get(key), dict):
                m[key] = {**m[key], **value}
            else:
                m[key] = value
        self.write_manifest(m)
        return m

    # progress of the running stage: its own small file, so the manifest is written only when a stage ends
    def report_progress(self, progress: dict[str, Any] | None) -> None:
        """Record where the running stage is (about once a second), or clear it (None)."""
        if progress is None:
            self.files.progress.unlink(missing_ok=True)
        else:
            atomic_write_json(self.files.progress, progress)

    def progress(self) -> dict[str, Any] | None:
        """The running stage's progress: {stage, done, total, unit, time, ...}, or None."""
        try:
            return json.loads(self.files.progress.read_text(encoding="utf-8"))
        except FileNotFoundError:  # runs written before progress had its own file kept it in the manifest
            return (self.manifest().get("progress") if self.exists() else None) or None
        except (OSError, ValueError):
            return None

    def stage_done(self, stage: str) -> bool:
        return self.exists() and self.manifest().get("stages", {}).get(stage) == "done"

    def mark_stage(self, stage: str, seconds: float | None = None) -> None:
        fields: dict[str, Any] = {"stages": {stage: "done"}}
        if seconds is not None:
            fields["timings"] = {stage: round(seconds, 2)}
        self.update(**fields)

    @contextmanager
    def lock(self, part: str | None = None) -> Iterator[None]:
        """One writer per run (or per part of it: `part` "r1" is replica 1's checkpoints, which a job of its own may
        train beside the run's job): a second job on the same run or part fails at once instead of mixing files."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.files.lock(part), "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                what = f"run {self.name!r}" + ("" if part is None else f" ({part})")
                raise RunError(f"{what} is being written by another job; wait for it or pick another name") from None
            fh.write(str(os.getpid()))
            fh.flush()
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def is_locked(self) -> bool:
        if not self.files.lock().exists():
            return False
        with open(self.files.lock()) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False

    def status(self, manifest: dict[str, Any] | None = None) -> str:
        """complete / failed / running (a live job holds the lock) / incomplete (stopped; run again to resume).

        `manifest`: the run's manifest when the caller has read it already (it is not read again)."""
        m = self.manifest() if manifest is None else manifest
        status = m.get("status", INCOMPLETE)
        if status == RUNNING:
            try:
                locked = self.is_locked()
            except OSError:  # a lock file we may not open: say what the manifest says
                locked = True
            if not locked:
                return INCOMPLETE
        return status if isinstance(status, str) else INCOMPLETE

    # tables
    def samples(self) -> pd.DataFrame:
        return pd.read_parquet(self.files.samples)

    def scores(self) -> pd.DataFrame:
        return pd.read_parquet(self.files.scores)

    def history(self) -> pd.DataFrame:
        p = self.files.history
        return pd.read_parquet(p) if p.exists() else pd.DataFrame(columns=["model", "epoch", "step", "loss", "lr"])


def list_runs(root: Path | str = DEFAULT_ROOT) -> pd.DataFrame:
    """One row per run folder with a manifest: status and headline figures.

    A folder that cannot be used as a run (a link pointing outside `root`, a manifest that cannot be read or is
    not a JSON object, a folder name that is not a run name) is left out of the table and never stops the
    listing: the table's `attrs["skipped"]` holds one line per such folder, "NAME: why"."""
    def get(m: dict[str, Any], *keys: str) -> Any:
        """A nested manifest value, None where a level is missing or not an object."""
        for key in keys:
            m = m.get(key) if isinstance(m, dict) else None
        return m

    root = Path(root)
    rows, skipped = [], []
    try:
        folders = sorted(root.iterdir()) if root.is_dir() else []
    except OSError as exc:
        folders, skipped = [], [f"{root}: the runs folder cannot be read ({exc.strerror or exc})"]
    for d in folders:
        try:
            if not RunLayout(d).manifest.is_file():
                continue
        except OSError as exc:  # e.g. a folder we may not enter
            skipped.append(f"{d.name}: cannot be read ({exc.strerror or exc})")
            continue
        if not NAME_RE.fullmatch(d.name) or ".." in d.name:
            skipped.append(f"{d.name}: not a valid run name (letters, digits, '.', '_' or '-' only)")
            continue
        try:
            run = Run(root, d.name)
            m = run.manifest()
            if not isinstance(m, dict):
                raise RunError("manifest.json is not a JSON object")
            status = run.status(m)
        except RunError as exc:
            skipped.append(f"{d.name}: {exc}")
            continue
        except (OSError, ValueError) as exc:  # unreadable, or not UTF-8
            skipped.append(f"{d.name}: manifest.json cannot be read ({getattr(exc, 'strerror', None) or exc})")
            continue

        rows.append(
            {
                "name": d.name,
                "status": status,
                "created": get(m, "created"),
                "dataset": get(m, "dataset", "source", "kind"),
                "model": get(m, "model", "name"),
                "parent": get(m, "lineage", "parent"),
                "mean_candidate": get(m, "summary", "mean_multimem", "candidate"),
                "mean_independent": get(m, "summary", "mean_multimem", "independent"),
                "mean_shared": get(m, "summary", "mean_multimem", "shared"),
                "injected_auc": get(m, "summary", "injected_auc"),
                "f_i2t_R@5": get(m, "utility", "f", "image_to_text_R@5"),
                "g_i2t_R@5": get(m, "utility", "g", "image_to_text_R@5"),
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["skipped"] = skipped
    return table
