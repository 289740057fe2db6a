"""The `--fast` demo end to end through the CLI, and what its run directory must hold."""
import json

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch

from multimem import cli
from multimem.model import augment
from multimem.data import images
from multimem.model import factory
from multimem.engine.index import NeighbourIndex
from multimem.store.runs import Run, list_runs


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert cli.main(["demo", "--fast", "--runs-root", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def run(root):
    return Run(root, "demo-fast")


def test_manifest_records_a_complete_reproducible_run(run):
    m = run.manifest()
    assert m["status"] == "complete" and run.status() == "complete"
    assert set(m["stages"]) == {"train_f", "train_g", "score", "evaluate", "index"}
    assert m["dataset"]["source"]["kind"] == "twemoji" and len(m["dataset"]["fingerprint"]) == 16
    assert m["split"]["sizes"] == {"shared": 200, "candidate": 60, "independent": 60, "extra": 80}
    assert m["dataset"]["n_samples"] == 400
    assert m["model"]["name"] == "mm-tiny" and m["model"]["token_map"][:2] == [0, -1]
    assert m["config"]["train"]["epochs"] == 2 and m["config"]["metric"]["augmentations"] == 2
    assert {"torch", "open_clip", "faiss"} <= set(m["versions"])
    assert {"prepare", "train_f", "train_g", "score", "evaluate", "index"} <= set(m["timings"])
    norm = m["metric"]["normalisation"]
    assert norm["range"] == pytest.approx(norm["max"] - norm["min"])
    for tag in ("f", "g"):
        u = m["utility"][tag]
        assert 0 <= u["image_to_text_R@1"] <= u["image_to_text_R@5"] <= u["image_to_text_R@10"] <= 1
        assert 0 <= u["zero_shot_top1"] <= 1 and u["zero_shot_classes"] >= 5


def test_scores_table_values_are_consistent(run):
    m = run.manifest()
    s = run.scores()
    assert s["subset"].value_counts().to_dict() == {"candidate": 60, "independent": 60, "shared": 60}
    assert s["id"].is_unique
    assert np.allclose(s["multimem_raw"], s["cmc_f"] - s["cmc_g"], atol=1e-5)
    assert np.allclose(s["cmc_f"], s["own_f"] - s["held_f"], atol=1e-5)
    assert np.allclose(s["multimem"], s["multimem_raw"] / m["metric"]["normalisation"]["range"], atol=1e-5)
    assert s["multimem"].abs().max() <= 1 + 1e-6
    assert s["multimem"].max() - s["multimem"].min() == pytest.approx(1.0, abs=1e-5)
    # own-alignment of n = 2 unit vectors lies in [0, 2]; cosines in [-1, 1]
    assert s[["own_f", "own_g"]].min().min() >= 0 and s[["own_f", "own_g"]].max().max() <= 2 + 1e-5
    assert s[["cos_f", "cos_g"]].abs().max().max() <= 1 + 1e-5
    samples = run.samples()
    assert len(samples) == 400 and samples["injected"].sum() == m["dataset"]["n_injected"] > 0
    merged = s.merge(samples[["id", "caption", "injected"]], on="id", suffixes=("", "_s"))
    assert (merged["caption"] == merged["caption_s"]).all() and (merged["injected"] == merged["injected_s"]).all()
    assert m["summary"]["mean_multimem"]["candidate"] == pytest.approx(s[s.subset == "candidate"].multimem.mean())


def test_neighbours_match_brute_force(run):
    idx = NeighbourIndex.from_run_dir(run.dir)
    samples = run.samples()
    train_rows = set(np.flatnonzero(samples["subset"].isin(["shared", "candidate"])))
    assert set(idx.index_rows.tolist()) == train_rows
    emb = np.load(run.path("embeddings", "f_image.npy"))
    txt = np.load(run.path("embeddings", "f_text.npy"))
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    rows = np.array(sorted(train_rows))
    query = int(np.flatnonzero(samples["subset"] == "independent")[0])
    for kind, q, gallery in (("image", emb, emb), ("image_to_text", emb, txt), ("text_to_image", txt, emb)):
        got = idx.search(query, kind, k=5)
        sims = gallery[rows] @ q[query]
        best = rows[np.argsort(-sims)[:5]]
        assert [r for r, _ in got] == best.tolist()
        assert [s for _, s in got] == pytest.approx(np.sort(sims)[::-1][:5].tolist(), abs=1e-5)
    own = idx.search(rows[0], "image", k=3)
    assert rows[0] not in [r for r, _ in own]


def test_checkpoint_reloads_with_plain_open_clip(run):
    factory.register_configs()
    plain = open_clip.create_model("mm-tiny", pretrained=str(run.path("checkpoints", "f.pt")))
    plain.eval()
    ckpt = torch.load(run.path("checkpoints", "f.pt"), weights_only=True)
    samples = run.samples()
    rows = [0, 5, 17]
    mean, std, size = factory.image_norm(plain)
    store = size * 3 // 2  # as the pipeline decodes them
    x = torch.stack([images.to_tensor(images.open_image(samples.image_ref[r]), store) for r in rows])
    x = augment.normalise(augment.clean_view(x, size), mean, std)
    tok = open_clip.get_tokenizer("mm-tiny")([samples.caption[r] for r in rows])
    lookup = {bpe: i for i, bpe in enumerate(ckpt["token_map"]) if i >= 2}
    tok = tok.apply_(lambda t: 0 if t == 0 else lookup.get(t, 1))
    with torch.no_grad():
        img = plain.encode_image(x, normalize=True).numpy()
        txt = plain.encode_text(tok, normalize=True).numpy()
    assert np.allclose(img, np.load(run.path("embeddings", "f_image.npy"))[rows], atol=1e-4)
    assert np.allclose(txt, np.load(run.path("embeddings", "f_text.npy"))[rows], atol=1e-4)


def test_readme_preprocessing_reproduces_stored_embeddings_with_plain_open_clip(run):
    """The README's recipe, with PIL, torchvision and open_clip only: alpha onto white, bicubic to 1.5× the model
    size, antialiased bilinear to the model size, normalise."""
    from PIL import Image
    from torchvision import transforms as T

    factory.register_configs()
    model = open_clip.create_model("mm-tiny", pretrained=str(run.path("checkpoints", "f.pt"))).eval()
    cfg = open_clip.get_model_config("mm-tiny")
    size = cfg["vision_cfg"]["image_size"]
    to_input = T.Compose([T.ToTensor(), T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR,
                                                  antialias=True),
                          T.Normalize(open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)])
    samples = run.samples()
    rows = [0, 5, 17, 101]
    batch = []
    for r in rows:
        img = Image.open(samples.image_ref[r]).convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img).convert("RGB")
        batch.append(to_input(img.resize((size * 3 // 2,) * 2, Image.BICUBIC)))
    with torch.no_grad():
        emb = model.encode_image(torch.stack(batch), normalize=True).numpy()
    stored = np.load(run.path("embeddings", "f_image.npy"))[rows]
    assert np.allclose(emb, stored, atol=1e-4)
    assert (emb * stored).sum(1).min() > 0.9999


def test_scores_equal_the_stored_ones_of_the_same_seed(run):
    """The --fast demo's scores, against those the code wrote before a change of structure (same seed, same data):
    every term per sample. The tolerance only allows for float differences between CPUs."""
    from pathlib import Path

    stored = pd.read_parquet(Path(__file__).parent / "fixtures" / "demo_fast_scores.parquet")
    now = run.scores()
    assert list(now["id"]) == list(stored["id"]) and list(now["subset"]) == list(stored["subset"])
    for col in stored.columns.drop(["id", "subset"]):
        np.testing.assert_allclose(now[col], stored[col], atol=1e-4, err_msg=col)


def test_runs_listing(root, capsys):
    df = list_runs(root)
    assert df.loc[0, "name"] == "demo-fast" and df.loc[0, "status"] == "complete"
    assert cli.main(["runs", "--runs-root", str(root)]) == 0
    assert "demo-fast" in capsys.readouterr().out


def test_stages_one_command_at_a_time(tmp_path, capsys):
    args = ["--runs-root", str(tmp_path)]
    assert cli.main(["train", "--fast", "--name", "staged", "--limit", "300", "--candidate", "30", "--extra", "40",
                     "--epochs", "1", *args]) == 0
    run = Run(tmp_path, "staged")
    assert run.status() == "incomplete"  # trained, not scored: never mistaken for a finished run
    assert not run.path("scores.parquet").exists()
    assert cli.main(["score", "staged", "--augmentations", "3", *args]) == 0
    assert run.manifest()["metric"]["augmentations"] == 3
    assert cli.main(["evaluate", "staged", *args]) == 0
    assert run.status() == "incomplete"
    assert cli.main(["index", "staged", *args]) == 0
    assert run.status() == "complete"
    assert len(run.scores()) == 90


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--fast", "--model", "no-such-model"], "unknown model name 'no-such-model'"),
        (["demo", "--fast", "--candidate", "300"], "too few"),
        (["demo", "--fast", "--source", "csv"], "--source csv needs --path"),
        (["score", "nothing-here"], "run 'nothing-here' not found"),
        (["score", "../etc"], "invalid run name"),
    ],
)
def test_bad_input_gets_one_line_errors(tmp_path, capsys, argv, message):
    assert cli.main([*argv, "--runs-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0


def test_every_command_has_help(capsys):
    for command in ("demo", "train", "score", "evaluate", "index", "runs"):
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "--runs-root" in out


def test_score_stage_reports_progress_and_rewrites_the_same_embeddings(run, tmp_path, monkeypatch):
    """Scoring reports samples embedded (for the Runs page) and embeds every sample once, in row order."""
    import shutil

    from multimem.pipeline import stages
    from multimem.pipeline import config as pipeline_config
    from multimem.pipeline import data as pipeline_data

    shutil.copytree(run.dir, tmp_path / "copy")
    copy = Run(tmp_path, "copy")
    for key in ("f_image", "g_text"):
        copy.path("embeddings", f"{key}.npy").unlink()
    cfg = pipeline_config.RunConfig.from_dict(copy.manifest()["config"])
    data, _ = pipeline_data.prepare(copy, cfg)
    data.tokenize(pipeline_data.tokenizer_for(copy, cfg, data))
    seen, report, writes = [], Run.report_progress, []

    def recording_report(self, progress):
        if progress:
            seen.append(progress)
        return report(self, progress)

    monkeypatch.setattr(Run, "report_progress", recording_report)
    monkeypatch.setattr(Run, "write_manifest", lambda self, m, w=Run.write_manifest: (writes.append(1), w(self, m)))
    stages.score_stage(copy, cfg, data)
    assert copy.progress() == seen[-1]  # in its own file; the manifest is written only when the stage ends
    assert len(writes) <= 3
    assert seen and seen[-1]["stage"] == "score" and seen[-1]["unit"] == "samples"
    assert seen[-1]["done"] == seen[-1]["total"] == 2 * 400
    for key in ("f_image", "f_text", "g_image", "g_text"):
        a, b = np.load(run.path("embeddings", f"{key}.npy")), np.load(copy.path("embeddings", f"{key}.npy"))
        assert a.shape == b.shape == (400, a.shape[1]) and np.allclose(a, b, atol=1e-5), key
    assert np.allclose(copy.scores()["multimem_raw"], run.scores()["multimem_raw"], atol=1e-5)


def test_index_stage_above_the_threshold_builds_ivf_and_records_its_recall(run, tmp_path, monkeypatch):
    import shutil

    import faiss

    from multimem.app import explain
    from multimem.engine import index
    from multimem.pipeline import stages
    from multimem.pipeline import config as pipeline_config
    from multimem.pipeline import data as pipeline_data

    shutil.copytree(run.dir, tmp_path / "copy")
    copy = Run(tmp_path, "copy")
    cfg = pipeline_config.RunConfig.from_dict(copy.manifest()["config"])
    data, _ = pipeline_data.prepare(copy, cfg)
    monkeypatch.setattr(index, "EXACT_MAX", 100)  # 260 training samples: above it
    stages.index_stage(copy, data)
    m = copy.manifest()["index"]
    assert m["kind"] == "IndexIVFFlat" and not m["exact"] and m["vectors"] == 260 and m["nlist"] == int(4 * 260 ** 0.5)
    assert set(m["recall_at_10"]) == {"image", "text"} and all(0.5 < r <= 1 for r in m["recall_at_10"].values())
    assert faiss.extract_index_ivf(index.load(copy.path("index", "image.faiss"))).nlist == m["nlist"]
    assert "Approximate search over 260 training samples" in explain.index_note(m)
    assert explain.index_note(run.manifest()["index"]) == "Exact search over 260 training samples."
    # searching every list is exact search (up to ties at the 10th place); `multimem index RUN --nprobe K` records it
    assert all(r >= 0.999 for r in stages.set_nprobe(copy, m["nlist"])["recall_at_10"].values())
    assert cli.main(["index", "copy", "--nprobe", "1", "--runs-root", str(tmp_path)]) == 0
    one = copy.manifest()["index"]
    assert one["nprobe"] == 1 and all(r < 1.0 for r in one["recall_at_10"].values())
    from multimem.engine.index import NeighbourIndex

    assert faiss.extract_index_ivf(NeighbourIndex.from_run_dir(copy.dir, 1).index["text"]).nprobe == 1
    assert cli.main(["index", "copy", "--nprobe", "0", "--runs-root", str(tmp_path)]) == 2
    assert cli.main(["index", run.name, "--nprobe", "4", "--runs-root", str(run.root)]) == 2  # exact: no nprobe
