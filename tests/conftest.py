"""Shared fixtures: one small real run per test session (the fast Twemoji demo), and a derived second run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def app_runs(tmp_path_factory) -> Path:
    """A runs root holding 'demo' (a real fast run: trained, scored, evaluated, indexed) and 'halved', a copy
    whose candidates' raw scores are halved, so Compare has a second run with a known change (-50%)."""
    from multimem.pipeline import presets
    from multimem.pipeline.stages import execute
    from multimem.store.runs import Run

    root = tmp_path_factory.mktemp("runs")
    execute(Run(root, "demo"), presets.demo(fast=True))

    shutil.copytree(root / "demo", root / "halved", ignore=shutil.ignore_patterns(".lock"))
    scores = pd.read_parquet(root / "halved" / "scores.parquet")
    cand = scores["subset"] == "candidate"
    scores.loc[cand, "multimem_raw"] = scores.loc[cand, "multimem_raw"] / 2
    scores.to_parquet(root / "halved" / "scores.parquet")
    manifest = json.loads((root / "halved" / "manifest.json").read_text())
    manifest.update(name="halved", lineage={"parent": "demo", "mitigation": "test: candidate scores halved"})
    (root / "halved" / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="session")
def demo_tables(app_runs):
    """(manifest, samples, scores) of the 'demo' run."""
    from multimem.store.runs import Run

    run = Run(app_runs, "demo")
    return run.manifest(), run.samples(), run.scores()
