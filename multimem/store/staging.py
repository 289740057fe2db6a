"""Replacing a finished run's results without ever leaving it broken.

Work that would overwrite a run's checkpoints or scores (importing checkpoints, scoring again with other settings)
is done in a staged copy beside the run (`RUN/.staged/RUN/`), and swapped in only once that copy's stages have
finished. If the work fails or is interrupted, the run is exactly as it was, and running the same command again
resumes the staged copy.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from multimem.store.atomic import atomic_write_json
from multimem.store.runs import INCOMPLETE, Run, RunError
from multimem.store.manifest import Manifest

STAGED = ".staged"
# what a staged copy starts from: the split and the samples (the data is read again and checked against them)
KEPT = ("samples.parquet",)
# results that belong to the old checkpoints or scores: removed from the run when the staged copy is swapped in
STALE = ("scores.parquet", "embeddings", "index", "history.parquet", "checkpoints")


def staged_run(run: Run) -> Run:
    """The staged copy of `run` (it need not exist yet)."""
    return Run(run.dir / STAGED, run.name)


def stage(run: Run, manifest: dict[str, Any], files: dict[str, Path] | None = None,
          keep_results: tuple[str, ...] = ()) -> Run:
    """Write a staged copy of `run` holding `manifest` (status incomplete), the run's samples, the paths in
    `keep_results` (e.g. its checkpoints when only scoring changes) and `files` ({name in run: source file}).

    An existing staged copy with the same manifest settings is kept (the work resumes); another is replaced.
    """
    staged = staged_run(run)
    if staged.exists():
        old = staged.manifest()
        if old.get("config") == manifest.get("config") and \
                Manifest(old).model.get("external") == Manifest(manifest).model.get("external"):
            return staged
        shutil.rmtree(staged.dir)
    staged.dir.mkdir(parents=True, exist_ok=True)
    for name in KEPT + keep_results:
        src = run.path(name)
        if src.is_dir():
            shutil.copytree(src, staged.path(name), ignore=shutil.ignore_patterns("work_*"))
        elif src.is_file():
            shutil.copyfile(src, staged.path(name))
    for name, src in (files or {}).items():
        staged.path(name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, staged.path(name))
    atomic_write_json(staged.manifest_path, {**manifest, "status": INCOMPLETE})  # written last: the copy is ready
    return staged


def swap_in(staged: Run, run: Run) -> dict[str, Any]:
    """Move the finished staged copy's files into `run` (the caller holds the run's lock); returns the manifest.

    The run is marked incomplete first and the plan of the swap is written down, so a crash in the middle of it
    (a few renames) leaves a run that says so, and the same command finishes the same swap.
    """
    m = staged.manifest()
    if m.get("error"):
        raise RunError(f"the staged copy of run {run.name!r} did not finish; run the same command again")
    trash = run.dir / ".replaced"
    plan_path = trash / "plan.json"
    if plan_path.is_file():  # a swap that was interrupted: finish the same one
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
    else:
        shutil.rmtree(trash, ignore_errors=True)
        bring = sorted(p.name for p in staged.dir.iterdir() if p.name not in ("manifest.json", ".lock"))
        plan = {"bring": bring, "remove": [n for n in STALE if n not in bring]}
        atomic_write_json(plan_path, plan)
        run.update(status=INCOMPLETE, error="new results are being moved in; run the same command again to finish")
    for name in plan["remove"]:
        if run.path(name).exists():
            os.replace(run.path(name), trash / name)
    for name in plan["bring"]:
        if staged.path(name).exists():
            if run.path(name).exists():
                os.replace(run.path(name), trash / name)
            os.replace(staged.path(name), run.path(name))
    old = run.manifest()
    m.update(name=run.name, created=old.get("created"), lineage=old.get("lineage", m.get("lineage")))
    run.write_manifest(m)
    shutil.rmtree(run.dir / STAGED, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)
    return m
