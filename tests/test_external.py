"""open_clip_train as the training engine: export a split, train f and g with it, import, score."""
import dataclasses
import subprocess
import sys

import pandas as pd
import pytest
import tarfile

from multimem.model import factory
from multimem.pipeline import presets
from multimem.interop.openclip_train import export_split, import_checkpoints
from multimem.pipeline.config import RunConfig
from multimem.pipeline.stages import execute
from multimem.store.runs import Run
from multimem.store.staging import swap_in
from multimem.data.sources.base import DataError


def small_config():
    cfg = presets.demo(fast=True)
    return dataclasses.replace(cfg, source={"kind": "twemoji", "skin_tones": True, "limit": 160},
                               split=dataclasses.replace(cfg.split, candidate=20, extra=30))


@pytest.fixture(scope="module")
def split_run(tmp_path_factory):
    run = Run(tmp_path_factory.mktemp("runs"), "ext")
    execute(run, small_config(), stages=())
    return run


def test_export_csv_and_wds_lists_match_the_split(split_run, tmp_path):
    samples = split_run.samples()
    written = export_split(split_run, "csv", tmp_path / "csv")
    f = pd.read_csv(written["f"])
    g = pd.read_csv(written["g"])
    assert set(f["id"]) == set(samples[samples.subset.isin(["shared", "candidate"])].id)
    assert set(g["id"]) == set(samples[samples.subset.isin(["shared", "independent"])].id)
    assert len(f) == samples[samples.subset.isin(["shared", "candidate"])].captions.map(len).sum()
    assert list(f.columns[:2]) == ["filepath", "title"]
    commands = (tmp_path / "csv" / "COMMANDS.md").read_text()
    assert "torchrun --nproc_per_node" in commands and "srun" in commands and "local-dir:" in commands
    assert factory.model_config(f"local-dir:{tmp_path / 'csv' / 'model'}")["text_cfg"]["vocab_size"] == 49408
    shards = export_split(split_run, "wds", tmp_path / "wds", all_captions=False, per_shard=50)["f"]
    names = [m for s in shards for m in tarfile.open(s).getnames()]
    assert sum(n.endswith(".txt") for n in names) == sum(n.endswith(".png") for n in names) == len(set(f["id"]))


def test_open_clip_train_checkpoints_score_as_a_run(split_run, tmp_path):
    out = tmp_path / "export"
    export_split(split_run, "csv", out)
    for tag in ("f", "g"):
        cmd = [sys.executable, "-m", "open_clip_train.main", "--train-data", str(out / f"{tag}_train.csv"),
               "--dataset-type", "csv", "--csv-img-key", "filepath", "--csv-caption-key", "title", "--csv-separator", ",",
               "--model", f"local-dir:{out / 'model'}", "--batch-size", "32", "--epochs", "1", "--lr", "1e-3",
               "--warmup", "2", "--workers", "0", "--device", "cpu", "--logs", str(out / "logs"), "--name", tag,
               "--report-to", "", "--seed", "0", "--save-frequency", "1"]
        subprocess.run(cmd, check=True, capture_output=True)
    ckpt = {t: out / "logs" / t / "checkpoints" / "epoch_1.pt" for t in ("f", "g")}
    staged = import_checkpoints(split_run, f"local-dir:{out / 'model'}", ckpt["f"], ckpt["g"])
    assert not split_run.stage_done("train_f")  # the run itself changes only when the staged copy is swapped in
    execute(staged, RunConfig.from_dict(staged.manifest()["config"]), ("score",))
    with split_run.lock():
        swap_in(staged, split_run)
    m = execute(split_run, RunConfig.from_dict(split_run.manifest()["config"]))
    assert m["status"] == "complete"
    assert m["model"]["external"]["f"] == str(ckpt["f"])
    scores = split_run.scores()
    assert len(scores) == 60 and scores["multimem_raw"].notna().all()
    assert scores["multimem"].max() - scores["multimem"].min() == pytest.approx(1.0, abs=1e-5)


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    from multimem.model.tokenizer import CompactTokenizer

    small = factory.create("mm-small", seed=0)
    path = tmp_path / "small.pt"
    factory.save_checkpoint(path, small, "mm-small", CompactTokenizer("mm-small", 24, None))
    with pytest.raises(DataError, match=r"small.pt does not fit model 'mm-tiny'"):
        factory.load_model(path, "mm-tiny")


def test_cli_split_export_and_import(tmp_path, capsys):
    """The same path through the CLI: split, export-split, then score with checkpoints given on the command line."""
    from multimem import cli

    root = ["--runs-root", str(tmp_path / "runs")]
    assert cli.main(["split", "--fast", "--name", "big", "--limit", "160", "--candidate", "20", "--extra", "30", *root]) == 0
    run = Run(tmp_path / "runs", "big")
    assert run.path("samples.parquet").exists() and run.status() == "incomplete"
    assert cli.main(["export-split", "big", "--format", "csv", "--out", str(tmp_path / "out"), *root]) == 0
    assert "local-dir:" in capsys.readouterr().out
    # two models of the exported architecture stand in for open_clip_train's output (trained in the test above)
    from multimem.model.tokenizer import CompactTokenizer

    name = f"local-dir:{tmp_path / 'out' / 'model'}"
    for tag, seed in (("f", 0), ("g", 1)):
        factory.save_checkpoint(tmp_path / f"{tag}.pt", factory.create(name, seed=seed), name,
                               CompactTokenizer(name, 24, None))
    assert cli.main(["score", "big", "--model", name, "--f-checkpoint", str(tmp_path / "f.pt"),
                     "--g-checkpoint", str(tmp_path / "g.pt"), *root]) == 0
    assert run.stage_done("score") and len(run.scores()) == 60
    assert cli.main(["score", "big", "--model", "mm-small", "--f-checkpoint", str(tmp_path / "f.pt"),
                     "--g-checkpoint", str(tmp_path / "g.pt"), *root]) == 2
    assert "does not fit model 'mm-small'" in capsys.readouterr().err
