"""Mitigation strategies (METHOD.md 4) as derived runs of the `--fast` demo, and sweeps over them."""
import json

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch

from multimem import cli, jobs
from multimem.errors import MitigationError
from multimem.mitigation import base, derive, kfold
from multimem.model import factory
from multimem.engine import train as train_mod
from multimem.data.dataset import build
from multimem.store.runs import Run, list_runs
from multimem.data.sources.twemoji import TwemojiSource
from multimem.data.splits import CANDIDATE, EXTRA, INDEPENDENT, SHARED, TRAIN_F, SplitSizes
from multimem.engine.train import Regrouping, TrainConfig, caption_counts, contrastive_loss, drop_tokens, plan_batches

DERIVED = {
    "noise": ["--strategy", "noise", "--std", "0.1", "--modalities", "both"],
    "captions": ["--strategy", "captions", "--captions-per-image", "1"],
    "removal": ["--strategy", "removal", "--n", "10", "--ranking", "multimem", "--finetune-epochs", "1"],
    "regroup": ["--strategy", "regroup", "--every", "1", "--folds", "2"],
}
NAMES = {"noise": "demo-fast.noise-all-0.1", "captions": "demo-fast.captions-1",
         "removal": "demo-fast.remove-multimem-10-ft1", "regroup": "demo-fast.regroup-k1-top0.05-folds2"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert cli.main(["demo", "--fast", "--runs-root", str(root)]) == 0
    for argv in DERIVED.values():
        assert cli.main(["mitigate", "--from", "demo-fast", *argv, "--runs-root", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def data():
    d = build(TwemojiSource(limit=160), SplitSizes(candidate=20, extra=20), 0, 0.0, 0, 48, workers=2)
    d.tokenize(factory.fit_tokenizer("mm-tiny", [c for p in d.pairs for c in p.captions]))
    return d


# ------------------------------------------------------------------------------------------ every strategy

@pytest.mark.parametrize("strategy", list(DERIVED))
def test_each_strategy_makes_a_valid_run_with_lineage(root, strategy):
    parent, run = Run(root, "demo-fast"), Run(root, NAMES[strategy])
    m, pm = run.manifest(), parent.manifest()
    assert m["status"] == "complete" and set(m["stages"]) == {"train_f", "train_g", "score", "evaluate", "index"}
    assert m["lineage"]["parent"] == "demo-fast" and m["lineage"]["mitigation"]["strategy"] == strategy
    # same data, split and injection: the same samples in the same subsets, the scores share ids
    assert m["dataset"]["fingerprint"] == pm["dataset"]["fingerprint"] and m["split"] == pm["split"]
    pd.testing.assert_frame_equal(run.samples()[["id", "subset", "injected"]], parent.samples()[["id", "subset", "injected"]])
    a, b = parent.scores(), run.scores()
    assert set(zip(a.id, a.subset)) == set(zip(b.id, b.subset))
    assert m["model"]["token_map"] == pm["model"]["token_map"]
    # compared on one shared range (and raw), never on the per-run range alone
    shared = m["metric"]["normalisation"]["shared_range_with_parent"]
    both = np.concatenate([a.multimem_raw, b.multimem_raw])
    assert shared["parent"] == "demo-fast" and shared["range"] == pytest.approx(both.max() - both.min(), rel=1e-5)
    assert shared["mean_multimem"]["candidate"] == pytest.approx(b[b.subset == CANDIDATE].multimem_raw.mean() / shared["range"], rel=1e-4)
    comp = m["comparison"]
    assert comp["subsets"][CANDIDATE]["parent_raw"] == pytest.approx(a[a.subset == CANDIDATE].multimem_raw.mean())
    assert comp["subsets"][CANDIDATE]["raw"] == pytest.approx(b[b.subset == CANDIDATE].multimem_raw.mean())
    assert m["mitigation"]["cost"]["parent_training_seconds"] > 0 and m["mitigation"]["cost"]["mitigation_seconds"] >= 0
    for tag in ("f", "g"):
        assert 0 <= m["utility"][tag]["image_to_text_R@5"] <= 1
    listed = list_runs(root).set_index("name")
    assert listed.loc[run.name, "parent"] == "demo-fast" and listed.loc[run.name, "status"] == "complete"


def test_strategy_settings_reach_the_training_config(root):
    noise = Run(root, NAMES["noise"]).manifest()["config"]["train"]
    assert noise["feature_noise"] == {"image": 0.1, "text": 0.1} and noise["feature_noise_space"] == "raw"
    assert Run(root, NAMES["captions"]).manifest()["config"]["train"]["captions_per_image"] == 1
    ckpt = torch.load(Run(root, NAMES["captions"]).path("checkpoints", "g.pt"), weights_only=True)
    assert ckpt["train_config"]["captions_per_image"] == 1
    parent = Run(root, "demo-fast").manifest()["config"]
    for s in ("removal", "regroup"):  # these keep the parent's training settings; the lineage says what changed
        assert Run(root, NAMES[s]).manifest()["config"] == parent


def test_rerunning_resumes_and_a_clash_is_refused(root, capsys):
    run = Run(root, NAMES["noise"])
    before = run.manifest()["stages"]
    assert cli.main(["mitigate", "--from", "demo-fast", *DERIVED["noise"], "--runs-root", str(root)]) == 0
    assert run.manifest()["stages"] == before
    code = cli.main(["mitigate", "--from", "demo-fast", "--strategy", "noise", "--std", "0.2",
                     "--name", NAMES["noise"], "--runs-root", str(root)])
    assert code == 2 and "is not this mitigation" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ noise

class RecordingLoss(open_clip.ClipLoss):
    seen: list = []

    def forward(self, image, text, logit_scale, *a, **k):
        RecordingLoss.seen.append((image.detach().clone(), text.detach().clone()))
        return super().forward(image, text, logit_scale, *a, **k)


@pytest.mark.parametrize("space", ["raw", "normalised"])
@pytest.mark.parametrize("noise, noised", [({"text": 0.5}, {"text"}), ({"image": 0.5}, {"image"}),
                                           ({"image": 0.5, "text": 0.5}, {"image", "text"}), ({}, set())])
def test_noise_reaches_only_the_chosen_modalities_in_the_training_step(data, tmp_path, monkeypatch, noise, noised, space):
    monkeypatch.setattr(train_mod.open_clip, "ClipLoss", RecordingLoss)
    RecordingLoss.seen = []
    calls = []
    real_noise = train_mod.add_feature_noise

    def spy(features, noise_cfg, gen):
        out = real_noise(features, noise_cfg, gen)
        calls.append(({k: v.detach().clone() for k, v in features.items()}, {k: v.detach().clone() for k, v in out.items()}))
        return out

    monkeypatch.setattr(train_mod, "add_feature_noise", spy)
    tok = factory.fit_tokenizer("mm-tiny", [c for p in data.pairs for c in p.captions])
    cfg = TrainConfig(epochs=1, batch_size=32, feature_noise=noise, feature_noise_space=space)
    train_mod.train(data, data.rows(*TRAIN_F), "mm-tiny", tok, cfg, tmp_path / "w")
    assert RecordingLoss.seen and len(calls) == len(RecordingLoss.seen)
    for (before, after), (image, text) in zip(calls, RecordingLoss.seen):
        for name in ("image", "text"):
            if name in noised:  # N(0, σ²) added to every coordinate of this modality's embeddings
                assert (after[name] - before[name]).std().item() == pytest.approx(0.5, rel=0.2)
            else:
                assert torch.equal(after[name], before[name])
        if space == "raw":  # noised before l2-normalisation: the loss sees unit vectors either way
            expected = {k: torch.nn.functional.normalize(v, dim=-1) for k, v in after.items()}
            assert torch.allclose(image, expected["image"], atol=1e-6) and torch.allclose(text, expected["text"], atol=1e-6)
        else:  # the loss sees the noised vectors themselves: unit norm only where no noise was added
            assert torch.equal(image, after["image"]) and torch.equal(text, after["text"])
            for name, feats in (("image", image), ("text", text)):
                norms = feats.norm(dim=-1)
                if name in noised:
                    assert (norms - 1).abs().mean() > 0.5
                else:
                    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_contrastive_step_noises_chosen_embeddings_by_sigma(data):
    tok = factory.fit_tokenizer("mm-tiny", [c for p in data.pairs for c in p.captions])
    model = factory.create("mm-tiny", seed=0)
    mean, std, size = factory.image_norm(model)
    from multimem.model import augment

    rows = torch.as_tensor(data.rows(*TRAIN_F)[:32])
    x = augment.normalise(augment.clean_view(data.images[rows], size), mean, std)
    tokens = data.caption_tokens(rows)
    with torch.no_grad():
        clean = model(x, tokens)
        _, feats = contrastive_loss(model, x, tokens, open_clip.ClipLoss(), {"text": 0.2}, torch.Generator().manual_seed(1))
        _, raw_feats = contrastive_loss(model, x, tokens, open_clip.ClipLoss(), {"text": 0.2},
                                        torch.Generator().manual_seed(1), "raw")
        raw_text = model.encode_text(tokens)
    assert torch.equal(feats["image"], clean["image_features"])
    assert (feats["text"] - clean["text_features"]).std().item() == pytest.approx(0.2, rel=0.15)
    # raw: the projection output (norm ~8 here) is noised, then normalised: a much smaller change of direction
    assert torch.allclose(raw_feats["image"], clean["image_features"], atol=1e-6)
    noise = torch.randn(raw_text.shape, generator=torch.Generator().manual_seed(1))
    expected = torch.nn.functional.normalize(raw_text + 0.2 * noise, dim=-1)
    assert torch.allclose(raw_feats["text"], expected, atol=1e-5)
    assert (raw_feats["text"] - clean["text_features"]).norm(dim=-1).mean() < (feats["text"] - clean["text_features"]).norm(dim=-1).mean()


# ------------------------------------------------------------------------------------------ captions

def test_caption_draw_uses_only_the_first_k_captions(data, tmp_path, monkeypatch):
    rows = torch.as_tensor(data.rows(*TRAIN_F))
    assert (data.caption_count[rows] > 1).any()
    assert torch.equal(caption_counts(data, rows, TrainConfig()), data.caption_count[rows])
    assert (caption_counts(data, rows, TrainConfig(captions_per_image=1)) == 1).all()
    assert (caption_counts(data, rows, TrainConfig(captions_per_image=2)) <= 2).all()
    seen = []
    original = type(data).caption_tokens

    def spy(self, batch, choice=None):
        seen.append(choice.clone())
        return original(self, batch, choice)

    monkeypatch.setattr(type(data), "caption_tokens", spy)
    tok = factory.fit_tokenizer("mm-tiny", [c for p in data.pairs for c in p.captions])
    for k, expect_max in ((1, 0), (None, None)):
        seen.clear()
        train_mod.train(data, data.rows(*TRAIN_F), "mm-tiny", tok,
                        TrainConfig(epochs=1, batch_size=32, captions_per_image=k), tmp_path / f"c{k}")
        drawn = torch.cat(seen)
        assert drawn.max().item() == 0 if expect_max == 0 else drawn.max().item() > 0


# ------------------------------------------------------------------------------------------ removal

def test_removal_removes_the_top_ranked_ids_from_training(root):
    parent, run = Run(root, "demo-fast"), Run(root, NAMES["removal"])
    ranking = pd.read_parquet(run.path("mitigation", "ranking.parquet"))
    scores = parent.scores()
    cand = scores[scores.subset == CANDIDATE].sort_values("multimem_raw", ascending=False)
    # only S_C has MultiMem scores in a baseline run: the pool is S_C, ranked by the parent's raw scores
    assert set(ranking["subset"]) == {CANDIDATE} and len(ranking) == len(cand)
    assert list(ranking.head(10)["id"]) == list(cand.head(10)["id"])
    samples = run.samples()
    trained = set(samples["id"].iloc[np.load(run.path("mitigation", "train_rows_f.npy"))])
    expected = set(samples.loc[samples.subset.isin(TRAIN_F), "id"]) - set(ranking.head(10)["id"])
    assert trained == expected
    m = run.manifest()
    assert m["mitigation"]["removed"] == 10 and m["mitigation"]["finetune_rows"] == len(expected)
    assert m["comparison"]["subsets"]["candidate_removed"]["n"] == 10
    # f was fine-tuned from the parent's f; g is the parent's, unchanged
    g_child = torch.load(run.path("checkpoints", "g.pt"), weights_only=True)["state_dict"]
    g_parent = torch.load(parent.path("checkpoints", "g.pt"), weights_only=True)["state_dict"]
    assert all(torch.equal(g_child[k], g_parent[k]) for k in g_parent)
    f_child = torch.load(run.path("checkpoints", "f.pt"), weights_only=True)
    assert f_child["fine_tuned_from"] == "demo-fast" and f_child["train_config"]["epochs"] == 1
    assert m["utility"]["g"] == parent.manifest()["utility"]["g"]


def test_removal_rows_passed_to_training_exclude_the_removed(root, monkeypatch):
    calls = []
    real = train_mod.train

    def spy(data, rows, *a, **k):
        calls.append((list(data.ids), np.asarray(rows).copy()))
        return real(data, rows, *a, **k)

    monkeypatch.setattr(train_mod, "train", spy)
    params = base.make_params("removal", n=15, ranking="cosine", pool="train", finetune_epochs=1)
    m = derive.mitigate(root, "demo-fast", "removal", params)
    run = Run(root, m["name"])
    ids, rows = calls[-1]
    trained = {ids[r] for r in rows}
    ranking = pd.read_parquet(run.path("mitigation", "ranking.parquet"))
    removed = set(ranking.head(15)["id"])
    assert not trained & removed and len(trained) == len(rows)
    samples = run.samples()
    assert trained | removed == set(samples.loc[samples.subset.isin(TRAIN_F), "id"])
    # cosine can rank every training sample: the pool is S_S and S_C, ranked by f's image-text cosine
    assert set(ranking["subset"]) == {SHARED, CANDIDATE}
    parent = Run(root, "demo-fast")
    img = np.load(parent.path("embeddings", "f_image.npy"))
    txt = np.load(parent.path("embeddings", "f_text.npy"))
    cos = (img * txt).sum(1)
    assert ranking["score"].to_numpy() == pytest.approx(cos[ranking["row"].to_numpy()], abs=1e-5)
    assert (np.diff(ranking["score"].to_numpy()) <= 1e-7).all()


def test_which_samples_can_be_ranked():
    with pytest.raises(MitigationError, match="only for S_C"):
        base.make_params("removal", ranking="multimem", pool="train")
    for ranking in ("cosine", "random", "multimem-kfold"):
        assert base.make_params("removal", ranking=ranking, pool="train").pool == "train"
    assert base.make_params("removal", n=0).ranking == "none"  # fine-tune only: the control


# ------------------------------------------------------------------------------------------ K-fold + regroup

def test_kfold_holds_every_sample_out_of_exactly_one_reference(data):
    kf = kfold.KFold(data, 3, seed=0)
    pool = set(data.rows(SHARED, CANDIDATE, INDEPENDENT).tolist())
    seen_by = {r: [j for j in range(3) if r in set(kf.train_rows(j).tolist())] for r in range(len(data))}
    for r in range(len(data)):
        if r in pool:
            assert len(seen_by[r]) == 2 and kf.held_out_of(np.array([r]))[0] not in seen_by[r]
        else:
            assert data.subset[r] == EXTRA and seen_by[r] == []
    sizes = np.bincount(kf.fold[kf.fold >= 0])
    assert sizes.max() - sizes.min() <= 1
    with pytest.raises(MitigationError):
        kf.held_out_of(data.rows(EXTRA)[:1])


def test_regroup_references_saw_everything_but_their_fold(root):
    run = Run(root, NAMES["regroup"])
    samples = run.samples()
    u = set(np.flatnonzero(samples.subset.isin([SHARED, CANDIDATE, INDEPENDENT]).to_numpy()).tolist())
    trained = [set(np.load(kfold.reference_dir(run, j) / "rows.npy").tolist()) for j in range(2)]
    for r in range(len(samples)):
        count = sum(r in t for t in trained)
        assert count == (1 if r in u else 0)  # K = 2: seen by K − 1 = 1 reference, held out of the other
    assert trained[0] | trained[1] == u and not trained[0] & trained[1]
    m = run.manifest()["mitigation"]
    for tag, n_train in (("f", 260), ("g", 260)):
        log = m["regroup_log"][tag]
        assert [e["epoch"] for e in log] == [1] and log[0]["n_hot"] == int(np.ceil(0.05 * n_train))
        hot = pd.read_parquet(run.path("mitigation", f"hot_{tag}.parquet"))
        allowed = {"f": {SHARED, CANDIDATE}, "g": {SHARED, INDEPENDENT}}[tag]
        assert len(hot) == log[0]["n_hot"] and set(hot["subset"]) <= allowed
    assert {"references", "scoring_f", "scoring_g"} <= set(m["cost"])


def test_reference_scorer_uses_the_reference_that_did_not_see_the_sample(data, monkeypatch):
    kf = kfold.KFold(data, 2, seed=0)
    scorer = kfold.ReferenceScorer.__new__(kfold.ReferenceScorer)
    scorer.data, scorer.kfold, scorer.held, scorer.mcfg = data, kf, data.rows(EXTRA), None
    scorer.reference = lambda j, epoch: f"ref{j}"
    value = {"model": 10.0, "ref0": 1.0, "ref1": 2.0}
    monkeypatch.setattr(kfold, "cmc_of", lambda model, d, rows, held, mcfg: np.full(len(rows), value[model]))
    rows = data.rows(*TRAIN_F)
    out = scorer(1, "model", rows)
    assert out == pytest.approx(10.0 - np.where(kf.fold[rows] == 0, 1.0, 2.0))


def test_plan_batches_groups_the_hot_samples():
    gen = torch.Generator().manual_seed(0)
    hot = torch.zeros(100, dtype=torch.bool)
    hot[torch.tensor([3, 17, 42, 55, 99])] = True
    batches = plan_batches(hot, 16, 6, gen)
    assert len(batches) == 6  # as many steps as plain training
    hot_batches = [b for b in batches if hot[b].any()]
    assert len(hot_batches) == 1 and hot[hot_batches[0]].all() and set(hot_batches[0].tolist()) == {3, 17, 42, 55, 99}
    cold = torch.cat([b for b in batches if not hot[b].any()])
    assert len(set(cold.tolist())) == len(cold) == 5 * 16
    assert Regrouping(every=2, score=None, top=0.05).pick(np.arange(100.0)).tolist() == [95, 96, 97, 98, 99]


def test_token_dropout_keeps_start_end_and_a_word():
    tokens = torch.tensor([[5, 9, 10, 11, 12, 20, 0, 0], [5, 9, 20, 0, 0, 0, 0, 0]])
    out = drop_tokens(tokens, 0.9, torch.Generator().manual_seed(0))
    for before, after in zip(tokens, out):
        n = int((after != 0).sum())
        assert after[0] == 5 and after[n - 1] == 20 and n >= 3 and (after[n:] == 0).all()
        assert set(after[1 : n - 1].tolist()) <= set(before[1:-1].tolist())
    assert torch.equal(drop_tokens(tokens, 0.0, torch.Generator()), tokens)


# ------------------------------------------------------------------------------------------ sweeps

def test_sweep_writes_its_table_and_plot(root, capsys):
    argv = ["sweep", "--from", "demo-fast", "--strategy", "removal", "--values", "0,10", "--rankings",
            "multimem,random", "--finetune-epochs", "1", "--sweep-name", "rm", "--runs-root", str(root)]
    assert cli.main(argv) == 0
    out = root / "_sweeps" / "rm"
    table = pd.read_csv(out / "table.csv")
    assert list(table["run"]) == ["demo-fast", "demo-fast.remove-0-ft1", "demo-fast.remove-multimem-10-ft1",
                                  "demo-fast.remove-random-10-ft1"]
    assert list(table["series"]) == ["baseline", "fine-tune only (n = 0)", "multimem", "random"]
    for col in ("mean_raw_candidate", "mean_shared_candidate", "f_mean_R@5", "relative_change_candidate", "cost_seconds"):
        assert col in table and table[col].iloc[1:].notna().all()
    # one range shared by every run of the sweep
    raws = np.concatenate([Run(root, r).scores().multimem_raw for r in table["run"]])
    assert table["mean_shared_candidate"].iloc[0] == pytest.approx(table["mean_raw_candidate"].iloc[0] / (raws.max() - raws.min()), rel=1e-4)
    assert (out / "plot.html").stat().st_size > 10_000 and (out / "table.parquet").exists()
    assert json.loads((out / "sweep.json").read_text())["strategy"] == "removal"
    assert "demo-fast.remove-random-10-ft1" in capsys.readouterr().out
    assert "_sweeps" not in set(list_runs(root)["name"])


def test_sweep_value_equal_to_the_parent_reuses_it(root):
    runs = __import__("multimem.sweep", fromlist=["plan"]).plan(root, "demo-fast", "captions", [None, 1], {})
    assert [r["name"] for r in runs] == ["demo-fast", "demo-fast.captions-1"]


# ------------------------------------------------------------------------------------------ CLI

@pytest.mark.parametrize(
    "argv, message",
    [
        (["mitigate", "--from", "demo-fast", "--strategy", "dropout"], "unknown strategy 'dropout'"),
        (["mitigate", "--from", "nope", "--strategy", "noise"], "unknown parent run 'nope'"),
        (["mitigate", "--from", "demo-fast", "--strategy", "noise", "--std", "abc"], "--std must be a number"),
        (["mitigate", "--from", "demo-fast", "--strategy", "noise", "--std", "-1"], "noise std must be"),
        (["mitigate", "--from", "demo-fast", "--strategy", "noise", "--modalities", "audio"], "--modalities must be"),
        (["mitigate", "--from", "demo-fast", "--strategy", "noise", "--noise-space", "pixels"], "--noise-space must be one of raw, normalised"),
        (["mitigate", "--from", "demo-fast", "--strategy", "noise", "--n", "5"], "--n do(es) not apply"),
        (["mitigate", "--from", "demo-fast", "--strategy", "removal", "--n", "500"], "cannot remove 500"),
        (["mitigate", "--from", "demo-fast", "--strategy", "removal", "--pool", "train"], "only for S_C"),
        (["mitigate", "--from", "demo-fast", "--strategy", "removal", "--ranking", "loss"], "--ranking must be one of multimem, cosine"),
        (["mitigate", "--from", "demo-fast", "--strategy", "regroup", "--every", "5"], "never rescores"),
        (["mitigate", "--from", "demo-fast", "--strategy", "captions"], "nothing to derive"),
        (["sweep", "--from", "demo-fast", "--strategy", "noise", "--values", "0.1,x"], "--std must be a number"),
        (["sweep", "--from", "demo-fast", "--strategy", "noise", "--values", "0.1", "--rankings", "random"],
         "--rankings applies to strategies with a ranking, not noise"),
        (["sweep", "--from", "demo-fast", "--strategy", "magic", "--values", "1"], "unknown strategy 'magic'"),
    ],
)
def test_bad_mitigation_input_gets_one_line_errors(root, capsys, argv, message):
    assert cli.main([*argv, "--runs-root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0


def test_mitigation_commands_have_help(capsys):
    for command in ("mitigate", "sweep"):
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        for option in ("--from", "--strategy", "--runs-root", "--std", "--n", "--ranking", "--every", "--top"):
            assert option in out


def test_app_job_command_is_an_argument_list(root):
    argv = jobs.mitigation_command(root, "demo-fast", "noise", {"std": 0.05, "modalities": ("image",)}, python="py")
    assert argv == ["py", "-m", "multimem", "mitigate", "--from", "demo-fast", "--strategy", "noise", "--runs-root",
                    str(root), "--std", "0.05", "--modalities", "image"]
    assert cli.parser().parse_args(argv[3:]).std == "0.05"
    with pytest.raises(MitigationError, match="noise std"):
        jobs.start_mitigation(root, "demo-fast", "noise", {"std": -2})
