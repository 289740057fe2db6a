"""Replicas: K = 2 seeds of f and g give per-sample means and standard errors equal to those of the K single runs."""
import dataclasses

import numpy as np
import pytest

from multimem import cli
from multimem.pipeline import presets
from multimem.pipeline.stages import execute
from multimem.store.runs import Run


def config(**changes):
    cfg = presets.demo(fast=True)
    cfg = dataclasses.replace(cfg, source={"kind": "twemoji", "skin_tones": True, "limit": 160},
                              split=dataclasses.replace(cfg.split, candidate=20, extra=30))
    return dataclasses.replace(cfg, **changes)


def test_two_replicas_equal_two_single_runs(tmp_path):
    both = Run(tmp_path, "both")
    execute(both, config(replicas=2))
    singles = [Run(tmp_path, f"seed{k}") for k in (0, 1)]
    for k, run in enumerate(singles):
        base = config()
        execute(run, dataclasses.replace(base, train=dataclasses.replace(base.train, seed=k)))
    s = both.scores()
    d = np.stack([r.scores()["multimem_raw"].to_numpy(float) for r in singles])
    assert list(s["id"]) == list(singles[0].scores()["id"])
    np.testing.assert_allclose(s["multimem_raw_r0"], d[0], atol=1e-6)
    np.testing.assert_allclose(s["multimem_raw_r1"], d[1], atol=1e-6)
    np.testing.assert_allclose(s["multimem_raw"], d.mean(0), atol=1e-6)
    np.testing.assert_allclose(s["multimem_se"], np.abs(d[0] - d[1]) / 2, atol=1e-6)  # sd(ddof=1) / sqrt(2)
    for col in ("cmc_f", "held_g", "sslmem_text"):
        np.testing.assert_allclose(s[col], np.mean([r.scores()[col] for r in singles], axis=0), atol=1e-6)
    # embeddings, indices and utility come from the first replica, which is the single run with the same seed
    np.testing.assert_allclose(np.load(both.path("embeddings", "f_image.npy")),
                               np.load(singles[0].path("embeddings", "f_image.npy")), atol=1e-6)
    m = both.manifest()
    assert m["metric"]["replicas"] == 2 and both.path("checkpoints", "g.r1.pt").exists()
    assert m["summary"]["intervals_raw"]["candidate"]["replicas"] == 2
    hist = both.history()
    assert sorted(hist.groupby(["model", "replica"]).size().index.tolist()) == [("f", 0), ("f", 1), ("g", 0), ("g", 1)]


def test_replicas_flag_and_its_check(tmp_path, capsys):
    root = ["--runs-root", str(tmp_path)]
    assert cli.main(["demo", "--fast", "--limit", "160", "--candidate", "20", "--extra", "30", "--replicas", "0",
                     *root]) == 2
    assert "--replicas must be at least 1" in capsys.readouterr().err


def test_removal_fine_tunes_every_replica_and_compares_with_intervals(tmp_path):
    from multimem.errors import MitigationError
    from multimem.mitigation import base, derive

    parent = Run(tmp_path, "parent")
    execute(parent, config(replicas=2))
    m = derive.mitigate(tmp_path, "parent", "removal", base.make_params("removal", n=5, finetune_epochs=1))
    child = Run(tmp_path, m["name"])
    assert m["status"] == "complete" and m["metric"]["replicas"] == 2
    for k, name in enumerate(("g.pt", "g.r1.pt")):
        assert child.path("checkpoints", name).read_bytes() == parent.path("checkpoints", name).read_bytes()
    assert child.path("checkpoints", "f.r1.pt").exists()
    change = m["comparison"]["subsets"]["candidate"]["change"]
    assert change["replicas"] == 2 and change["low"] <= change["estimate"] <= change["high"]
    hist = child.history()
    assert set(zip(hist["model"], hist["replica"])) == {("f", 0), ("f", 1), ("g", 0), ("g", 1)}
    with pytest.raises(MitigationError, match="cannot change that"):
        derive.mitigate(tmp_path, "parent", "removal", base.make_params("removal", n=5), replicas=3)


def test_replicas_as_jobs_of_their_own_equal_one_job(tmp_path, capsys):
    root = ["--runs-root", str(tmp_path)]
    data = ["--fast", "--limit", "160", "--candidate", "20", "--extra", "30", "--replicas", "2"]
    assert cli.main(["split", "--name", "jobs", *data, *root]) == 0
    run = Run(tmp_path, "jobs")
    with run.lock("r1"):  # replica 1's job is running: a second one for it fails at once
        assert cli.main(["train", "--name", "jobs", "--replica", "1", *root]) == 2
    assert "(r1) is being written by another job" in capsys.readouterr().err
    for k in (1, 0):  # any order, each a command of its own
        assert cli.main(["train", "--name", "jobs", "--replica", str(k), *root]) == 0
    assert cli.main(["train", "--name", "jobs", "--replica", "2", *root]) == 2
    assert run.path("checkpoints", "f.r1.pt").exists() and not run.stage_done("train_f")
    assert cli.main(["score", "jobs", *root]) == 0
    assert run.stage_done("train_f") and run.stage_done("train_g") and run.stage_done("score")
    one = Run(tmp_path, "one")
    execute(one, config(replicas=2))
    np.testing.assert_allclose(run.scores()["multimem_raw"], one.scores()["multimem_raw"], atol=1e-6)
    np.testing.assert_allclose(run.scores()["multimem_se"], one.scores()["multimem_se"], atol=1e-6)
    hist = run.history()
    assert set(zip(hist["model"], hist["replica"])) == {("f", 0), ("f", 1), ("g", 0), ("g", 1)}
    assert not list(run.path("checkpoints").glob("history.*.parquet"))
