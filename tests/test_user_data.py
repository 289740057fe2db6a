"""A user's own CSV through the CLI, one command at a time: nothing is altered unless asked, skipped rows are
said where the user looks, and the manifest records what was really done."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from multimem import cli
from multimem.store.runs import Run

N = 64


@pytest.fixture()
def dataset(tmp_path):
    """N good images with two captions each, plus a corrupt image, an empty file, a missing file, a blank caption."""
    folder = tmp_path / "data"
    (folder / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        pixels[:, : 4 + i % 30] = (i * 37 % 256, i * 91 % 256, 200)
        Image.fromarray(pixels).save(folder / "img" / f"{i:03d}.png")
        rows += [{"filepath": f"img/{i:03d}.png", "title": f"picture number {i} of shape {i % 7}"},
                 {"filepath": f"img/{i:03d}.png", "title": f"another caption for {i}"}]
    (folder / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "img" / "empty.png").write_bytes(b"")
    rows += [{"filepath": "img/corrupt.png", "title": "a corrupt image"},
             {"filepath": "img/empty.png", "title": "an empty image file"},
             {"filepath": "img/missing.png", "title": "a missing file"},
             {"filepath": "img/000.png", "title": "   "}]
    pd.DataFrame(rows).to_csv(folder / "data.csv", index=False)
    return folder / "data.csv"


def options(root, path, *extra):
    return ["--runs-root", str(root), "--source", "csv", "--path", str(path), "--candidate", "10", "--extra", "14",
            "--fast", *extra]


def test_split_says_what_it_skipped_and_alters_no_caption(tmp_path, dataset, capsys):
    root = tmp_path / "runs"
    assert cli.main(["split", "--name", "s", *options(root, dataset)]) == 0
    out = capsys.readouterr().out
    assert "split of 64 samples" in out and "4 skipped" in out
    for reason in ("cannot decode image (1)", "empty file (1)", "image file not found (1)",
                   "empty caption in column 'title' (1)"):
        assert reason in out
    assert "missing.png" in out and "corrupt.png" in out
    m = Run(root, "s").manifest()
    assert m["dataset"]["n_injected"] == 0 and m["dataset"]["inject_fraction"] == 0
    assert m["dataset"]["skipped"]["count"] == 4
    samples = Run(root, "s").samples()
    assert not samples["injected"].any()
    for r in samples.itertuples():
        i = int(r.id[4:7])
        assert list(r.captions) == [f"picture number {i} of shape {i % 7}", f"another caption for {i}"]


def test_injection_only_when_asked(tmp_path, dataset):
    root = tmp_path / "runs"
    assert cli.main(["split", "--name", "asked", *options(root, dataset, "--inject", "0.2")]) == 0
    m = Run(root, "asked").manifest()
    assert m["dataset"]["n_injected"] > 0 and m["config"]["inject_fraction"] == 0.2


def test_separate_commands_record_what_was_done(tmp_path, dataset, capsys):
    root = tmp_path / "runs"
    run = Run(root, "t")
    assert cli.main(["train", "--name", "t", *options(root, dataset, "--epochs", "1", "--heldout-size", "500")]) == 0
    out = capsys.readouterr().out
    assert "4 skipped" in out and f"next: multimem score t --runs-root {root}" in out
    assert "mean loss of the last epoch" in out
    assert cli.main(["score", "t", "--runs-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "mean normalised MultiMem" in out and f"next: multimem evaluate t --runs-root {root}" in out
    assert "inject" not in out
    m = run.manifest()
    assert m["metric"]["heldout_size"] == 14 and m["metric"]["heldout_requested"] == 500  # S_E had 14 samples
    assert cli.main(["evaluate", "t", "--runs-root", str(root)]) == 0
    m = run.manifest()
    # the stage's time covers reading the data and loading the models, not only the retrieval maths
    assert m["timings"]["evaluate"] >= m["timings"]["prepare"] > 0
    assert cli.main(["index", "t", "--runs-root", str(root)]) == 0
    assert run.status() == "complete" and "next: the dashboard" in capsys.readouterr().out
    assert run.manifest()["dataset"]["n_injected"] == 0


@pytest.mark.parametrize("sep", ["\\t", "\t", "tab"])
def test_tab_separator_is_taken_literally_without_warnings(tmp_path, dataset, sep):
    import warnings

    from multimem.data.sources import CsvSource

    tsv = dataset.with_suffix(".txt")
    pd.read_csv(dataset).to_csv(tsv, sep="\t", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' "falling back to the python engine" would fail here
        pairs = CsvSource(tsv, sep=sep).pairs()
    assert len(pairs) == N + 2  # the corrupt and the empty image file are skipped only when decoded
    assert pairs[0].captions == ("picture number 0 of shape 0", "another caption for 0")


def test_multi_character_separator_is_literal(tmp_path):
    from multimem.data.sources import CsvSource

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "d.csv").write_text("filepath||title\na.png||a.b|c\n")
    assert CsvSource(tmp_path / "d.csv", sep="||").pairs()[0].captions == ("a.b|c",)


def clean_csv(folder):
    """40 good images, one caption each: nothing to skip."""
    (folder / "img").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / "img" / f"{i}.png")
        rows.append({"filepath": f"img/{i}.png", "title": f"caption {i}"})
    pd.DataFrame(rows).to_csv(folder / "d.csv", index=False)
    return folder / "d.csv"


def shards(folder, csv):
    import io
    import tarfile

    folder.mkdir(parents=True)
    table = pd.read_csv(csv)
    for s in range(2):
        with tarfile.open(folder / f"part-{s}.tar", "w") as tar:
            for r in table.iloc[s::2].itertuples():
                key = Path(r.filepath).stem
                for name, data in ((f"{key}.png", (csv.parent / r.filepath).read_bytes()),
                                   (f"{key}.txt", r.title.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(folder / "part-{0..1}.tar")


@pytest.mark.parametrize("source", ["csv", "wds"])
def test_readme_steps_one_command_each_give_a_complete_run(tmp_path, source, capsys):
    csv = clean_csv(tmp_path / "data")
    path = str(csv) if source == "csv" else shards(tmp_path / "shards", csv)
    data = ["--source", source, "--path", path, "--candidate", "6", "--extra", "8", "--fast"]
    root = ["--runs-root", str(tmp_path / "runs")]
    assert cli.main(["split", "--name", "r", *data, *root]) == 0
    assert cli.main(["train", "--name", "r", *data, "--epochs", "1", *root]) == 0
    for step in ("score", "evaluate", "index"):
        assert cli.main([step, "r", *root]) == 0
    run = Run(tmp_path / "runs", "r")
    m = run.manifest()
    assert run.status() == "complete"
    assert m["dataset"]["skipped"]["count"] == 0 and m["dataset"]["n_injected"] == 0 and m["dataset"]["n_samples"] == 40
    assert sorted(run.samples()["caption"]) == sorted(f"caption {i}" for i in range(40))
    assert "0 skipped" in capsys.readouterr().out
