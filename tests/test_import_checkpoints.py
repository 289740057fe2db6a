"""Importing checkpoints into a finished run: this project's own checkpoints (with their token map) score as they
should, and a failing import leaves the run exactly as it was."""
import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest

from multimem import cli
from multimem.pipeline import presets
from multimem.pipeline.stages import execute
from multimem.store.runs import Run


def config(epochs: int):
    cfg = presets.demo(fast=True)
    return dataclasses.replace(cfg, source={"kind": "twemoji", "skin_tones": True, "limit": 160},
                               split=dataclasses.replace(cfg.split, candidate=20, extra=30),
                               train=dataclasses.replace(cfg.train, epochs=epochs))


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def two_runs(tmp_path):
    """'a' (2 epochs) and 'b' (3 epochs): same data, split and metric settings, other checkpoints."""
    root = tmp_path / "runs"
    execute(Run(root, "a"), config(2))
    execute(Run(root, "b"), config(3))
    return root


def snapshot(run: Run) -> dict:
    files = ["checkpoints/f.pt", "checkpoints/g.pt", "scores.parquet", "embeddings/f_image.npy", "index/image.faiss"]
    return {name: digest(run.path(name)) for name in files} | {"status": run.status()}


def score_args(root, f, g):
    return ["score", "a", "--runs-root", str(root), "--f-checkpoint", str(f), "--g-checkpoint", str(g)]


def test_own_checkpoints_import_with_their_token_map(two_runs, capsys):
    a, b = Run(two_runs, "a"), Run(two_runs, "b")
    assert cli.main(score_args(two_runs, b.path("checkpoints", "f.pt"), b.path("checkpoints", "g.pt"))) == 0
    m = a.manifest()
    assert m["model"]["token_map"] == b.manifest()["model"]["token_map"] is not None
    assert m["stages"] == {"train_f": "done", "train_g": "done", "score": "done"}
    assert digest(a.path("checkpoints", "f.pt")) == digest(b.path("checkpoints", "f.pt"))
    assert not a.path("index").exists() and not a.path(".staged").exists()
    # same data, split, views and models: the imported run's scores are b's
    mine, theirs = a.scores(), b.scores()
    assert list(mine["id"]) == list(theirs["id"])
    np.testing.assert_allclose(mine["multimem_raw"], theirs["multimem_raw"], atol=1e-6)
    np.testing.assert_allclose(np.load(a.path("embeddings", "f_text.npy")), np.load(b.path("embeddings", "f_text.npy")),
                               atol=1e-6)
    assert "multimem evaluate a" in capsys.readouterr().out
    assert cli.main(["evaluate", "a", "--runs-root", str(two_runs)]) == 0
    assert cli.main(["index", "a", "--runs-root", str(two_runs)]) == 0
    assert a.status() == "complete"


def test_failed_import_leaves_the_finished_run_as_it_was(two_runs, monkeypatch):
    from multimem.pipeline import stages

    a, b = Run(two_runs, "a"), Run(two_runs, "b")
    before = snapshot(a)
    manifest_before = a.manifest()

    def broken(*args, **kwargs):
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(stages, "score_stage", broken)
    args = score_args(two_runs, b.path("checkpoints", "f.pt"), b.path("checkpoints", "g.pt"))
    with pytest.raises(RuntimeError):
        cli.main(args)
    assert snapshot(a) == before
    assert {k: v for k, v in a.manifest().items() if k != "updated"} == \
        {k: v for k, v in manifest_before.items() if k != "updated"}
    monkeypatch.undo()
    assert cli.main(args) == 0  # the same command resumes the staged copy and swaps it in
    assert digest(a.path("checkpoints", "g.pt")) == digest(b.path("checkpoints", "g.pt"))
    assert a.stage_done("score") and not a.path(".staged").exists()


def test_import_waits_for_the_run_lock_before_writing(two_runs, capsys):
    a, b = Run(two_runs, "a"), Run(two_runs, "b")
    before = snapshot(a)
    with a.lock():
        code = cli.main(score_args(two_runs, b.path("checkpoints", "f.pt"), b.path("checkpoints", "g.pt")))
    assert code == 2 and "being written by another job" in capsys.readouterr().err
    assert snapshot(a) == before and not a.path(".staged").exists()


def test_rescoring_with_other_settings_is_staged(two_runs):
    a = Run(two_runs, "a")
    old = a.scores()
    assert cli.main(["score", "a", "--runs-root", str(two_runs), "--augmentations", "3"]) == 0
    m = a.manifest()
    assert m["config"]["metric"]["augmentations"] == 3 and m["metric"]["augmentations"] == 3
    assert not a.stage_done("index") and a.stage_done("evaluate") and a.path("checkpoints", "f.pt").exists()
    assert not np.allclose(a.scores()["multimem_raw"], old["multimem_raw"])
    assert isinstance(a.history(), pd.DataFrame) and len(a.history()) > 0
