"""Training: seeded, resumable from its last epoch checkpoint, with optional noise on chosen modalities."""
import pytest
import torch

from multimem.model import factory
from multimem.data.dataset import build
from multimem.data.sources.twemoji import TwemojiSource
from multimem.data.splits import TRAIN_F, SplitSizes
from multimem.engine.train import TrainConfig, add_feature_noise, epoch_checkpoints, lr_at, train


@pytest.fixture(scope="module")
def data():
    d = build(TwemojiSource(limit=160), SplitSizes(candidate=20, extra=20), 0, 0.0, 0, 48, workers=2)
    d.tokenize(factory.fit_tokenizer("mm-tiny", [c for p in d.pairs for c in p.captions]))
    return d


class Stop(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(data, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=32, seed=5)
    tok = factory.fit_tokenizer("mm-tiny", [c for p in data.pairs for c in p.captions])
    rows = data.rows(*TRAIN_F)
    full, hist_full = train(data, rows, "mm-tiny", tok, cfg, tmp_path / "full")

    def stop_in_epoch_three(step, total):
        if step == 2 * (len(rows) // 32) + 1:
            raise Stop()

    with pytest.raises(Stop):
        train(data, rows, "mm-tiny", tok, cfg, tmp_path / "cut", on_step=stop_in_epoch_three)
    assert [e for e, _ in epoch_checkpoints(tmp_path / "cut")] == [2]  # older epoch checkpoints are pruned
    resumed, hist = train(data, rows, "mm-tiny", tok, cfg, tmp_path / "cut")
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert [h["loss"] for h in hist] == pytest.approx([h["loss"] for h in hist_full])


def test_same_seed_same_model_other_seed_other_model(data, tmp_path):
    tok = factory.fit_tokenizer("mm-tiny", [c for p in data.pairs for c in p.captions])
    rows = data.rows(*TRAIN_F)
    a, _ = train(data, rows, "mm-tiny", tok, TrainConfig(epochs=1, batch_size=32, seed=1), tmp_path / "a")
    b, _ = train(data, rows, "mm-tiny", tok, TrainConfig(epochs=1, batch_size=32, seed=1), tmp_path / "b")
    c, _ = train(data, rows, "mm-tiny", tok, TrainConfig(epochs=1, batch_size=32, seed=2), tmp_path / "c")
    w = "visual.conv1.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])


def test_feature_noise_only_on_chosen_modalities():
    feats = {"image": torch.zeros(4, 8), "text": torch.zeros(4, 8)}
    out = add_feature_noise(feats, {"text": 0.5}, torch.Generator().manual_seed(0))
    assert torch.equal(out["image"], feats["image"])
    assert out["text"].std().item() == pytest.approx(0.5, rel=0.4)


def test_warmup_then_cosine():
    cfg = TrainConfig(lr=1.0, warmup=0.1)
    assert lr_at(0, 100, cfg) == pytest.approx(0.1)
    assert lr_at(9, 100, cfg) == pytest.approx(1.0)
    assert lr_at(55, 100, cfg) == pytest.approx(0.5, abs=0.02)
    assert lr_at(99, 100, cfg) < 0.01


def test_a_nan_loss_stops_training_with_a_named_error(data, tmp_path):
    from multimem.engine.train import TrainingError

    tok = factory.fit_tokenizer("mm-tiny", [c for p in data.pairs for c in p.captions])
    cfg = TrainConfig(epochs=1, batch_size=32, feature_noise={"image": float("inf")})
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, step 1; lower the learning rate \(--lr"):
        train(data, data.rows(*TRAIN_F), "mm-tiny", tok, cfg, tmp_path / "nan")
    assert not list((tmp_path / "nan").glob("epoch_*.pt"))  # nothing that looks like a finished epoch
