"""MultiMem maths against values worked out by hand."""
import math

import pytest
import torch

from multimem import metric


def unit(*v):
    t = torch.tensor(v, dtype=torch.float64)
    return t / t.norm()


def test_cmc_two_modalities_by_hand():
    # one sample, one view, image = e1, text = (e1 + e2)/√2: cos = 1/√2
    views = torch.stack([unit(1, 0), unit(1, 1)]).view(1, 1, 2, 2)
    terms = metric.cmc(views, None)
    # ½‖φ_i + φ_t‖² = ½(2 + 2 cos) = 1 + 1/√2
    assert terms.own.item() == pytest.approx(1 + 1 / math.sqrt(2))
    assert terms.held.item() == 0.0
    # H = one sample with image = text = e2: ½ (φ_i + φ_t)·(2 e2) = (0 + 1/√2)
    held = torch.stack([unit(0, 1), unit(0, 1)]).view(1, 2, 2)
    terms = metric.cmc(views, held)
    assert terms.held.item() == pytest.approx(1 / math.sqrt(2))
    assert terms.cmc.item() == pytest.approx(1.0)


def test_cmc_three_modalities_and_views_by_hand():
    # n = 3, A = 2 views. View 1: all three equal (own = ½·9 = 4.5); view 2: mutually orthogonal (own = ½·3 = 1.5)
    v1 = torch.stack([unit(1, 0, 0)] * 3)
    v2 = torch.eye(3, dtype=torch.float64)
    views = torch.stack([v1, v2]).unsqueeze(0)  # 1 × 2 × 3 × 3
    # H: two samples; h1 all e1, h2 all e2 -> mean of summed = (1.5, 1.5, 0)
    held = torch.stack([torch.stack([unit(1, 0, 0)] * 3), torch.stack([unit(0, 1, 0)] * 3)])
    terms = metric.cmc(views, held)
    assert terms.own.item() == pytest.approx((4.5 + 1.5) / 2)
    # view 1 summed = (3,0,0) · (1.5,1.5,0) = 4.5; view 2 summed = (1,1,1) · (1.5,1.5,0) = 3; ½·mean = 1.875
    assert terms.held.item() == pytest.approx(0.5 * (4.5 + 3.0) / 2)
    assert terms.cmc.item() == pytest.approx(3.0 - 1.875)
    # the summary vector gives the same second term as the full H
    assert metric.cmc(views, metric.held_summary(held)).held.item() == pytest.approx(1.875)


def test_score_sign_and_normalisation():
    # f aligns the sample's image and text (cos 1), g does not (cos 0): f trained on it -> positive
    f_views = torch.stack([unit(1, 0), unit(1, 0)]).view(1, 1, 2, 2)
    g_views = torch.stack([unit(1, 0), unit(0, 1)]).view(1, 1, 2, 2)
    raw = metric.multimem(metric.cmc(f_views, None), metric.cmc(g_views, None))
    assert raw.item() == pytest.approx(2.0 - 1.0)
    scores = torch.tensor([2.0, -1.0, 0.5])
    norm, r = metric.normalise(scores)
    assert r == pytest.approx(3.0)
    assert norm.tolist() == pytest.approx([2 / 3, -1 / 3, 1 / 6])
    assert norm.abs().max() <= 1
    shared, _ = metric.normalise(scores, value_range=6.0)
    assert shared.tolist() == pytest.approx([1 / 3, -1 / 6, 1 / 12])
    assert metric.normalise(torch.zeros(3))[0].tolist() == [0, 0, 0]


def test_pairwise_equals_full_for_two_modalities_and_restricts_for_three():
    torch.manual_seed(0)
    f = metric.l2_normalise(torch.randn(4, 3, 2, 5))
    g = metric.l2_normalise(torch.randn(4, 3, 2, 5))
    fh, gh = metric.l2_normalise(torch.randn(6, 2, 5)), metric.l2_normalise(torch.randn(6, 2, 5))
    full = metric.multimem(metric.cmc(f, fh), metric.cmc(g, gh))
    assert torch.allclose(metric.pairwise(f, g, fh, gh, 0, 1), full)
    # n = 3 with the third modality identical in f and g: the (0, 1) pair equals the 2-modality score
    third = metric.l2_normalise(torch.randn(4, 3, 1, 5))
    held3 = metric.l2_normalise(torch.randn(6, 1, 5))
    f3, g3 = torch.cat([f, third], 2), torch.cat([g, third], 2)
    fh3, gh3 = torch.cat([fh, held3], 1), torch.cat([gh, held3], 1)
    assert torch.allclose(metric.pairwise(f3, g3, fh3, gh3, 0, 1), full)
    assert not torch.allclose(metric.multimem(metric.cmc(f3, fh3), metric.cmc(g3, gh3)), full)


def test_sslmem_by_hand():
    # f maps two views to the same point (distance 0); g to orthogonal points (distance √2)
    f = torch.stack([unit(1, 0), unit(1, 0)]).view(1, 2, 2)
    g = torch.stack([unit(1, 0), unit(0, 1)]).view(1, 2, 2)
    assert metric.sslmem(f, g).item() == pytest.approx(math.sqrt(2))
    # three views: pairwise distances 0, √2, √2 -> mean 2√2/3
    three = torch.stack([unit(1, 0), unit(1, 0), unit(0, 1)]).view(1, 3, 2)
    assert metric.view_distance(three).item() == pytest.approx(2 * math.sqrt(2) / 3)
