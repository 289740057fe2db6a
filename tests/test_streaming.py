"""Streamed images (decoded per batch by DataLoader workers) train and score exactly like images held in memory."""
import numpy as np
import torch

from multimem.model import factory
from multimem.data.dataset import StreamedImages, build, image_batches
from multimem.engine.score import MetricConfig, score
from multimem.data.sources.twemoji import TwemojiSource
from multimem.data.splits import TRAIN_F, SplitSizes
from multimem.engine.train import TrainConfig, train

ARGS = (SplitSizes(candidate=20, extra=20), 0, 0.05, 0, 48)


def test_streamed_and_in_memory_scores_match():
    memory = build(TwemojiSource(limit=120), *ARGS, workers=2)
    streamed = build(TwemojiSource(limit=120), *ARGS, workers=2, stream=True)
    assert isinstance(streamed.images, StreamedImages) and isinstance(memory.images, torch.Tensor)
    assert streamed.ids == memory.ids
    rows = torch.tensor([3, 1, 7])
    assert torch.equal(streamed.images[rows], memory.images[rows])
    tok = factory.fit_tokenizer("mm-tiny", [c for p in memory.pairs for c in p.captions])
    for d in (memory, streamed):
        d.tokenize(tok)
    f, g = factory.create("mm-tiny", seed=0).eval(), factory.create("mm-tiny", seed=1).eval()
    cfg = MetricConfig(augmentations=2, heldout_size=20, batch_size=16)
    a, _ = score(f, g, memory, cfg)
    b, _ = score(f, g, streamed, cfg)
    assert np.allclose(a["multimem_raw"], b["multimem_raw"], atol=1e-5)
    assert np.array_equal(a["row"], b["row"])


def test_image_batches_cover_rows_in_order():
    images = torch.arange(10).view(10, 1, 1, 1).expand(10, 3, 2, 2).to(torch.uint8)
    rows = torch.tensor([9, 2, 5, 0, 4])
    got = list(image_batches(images, rows, batch_size=2))
    assert [b.tolist() for b, _ in got] == [[9, 2], [5, 0], [4]]
    assert [px[:, 0, 0, 0].tolist() for _, px in got] == [[9, 2], [5, 0], [4]]


def test_streamed_training_matches_in_memory(tmp_path):
    """The training loop reads streamed batches through DataLoader workers; the weights come out the same."""
    memory = build(TwemojiSource(limit=120), *ARGS, workers=2)
    streamed = build(TwemojiSource(limit=120), *ARGS, workers=2, stream=True)
    streamed.workers = 1
    tok = factory.fit_tokenizer("mm-tiny", [c for p in memory.pairs for c in p.captions])
    cfg = TrainConfig(epochs=2, batch_size=16, seed=3)
    out = []
    for name, d in (("memory", memory), ("streamed", streamed)):
        d.tokenize(tok)
        model, history = train(d, d.rows(*TRAIN_F), "mm-tiny", tok, cfg, tmp_path / name)
        out.append((model.state_dict(), [h["loss"] for h in history]))
    (wa, la), (wb, lb) = out
    assert len(la) == len(lb) > 2 and np.allclose(la, lb, atol=1e-5)
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
