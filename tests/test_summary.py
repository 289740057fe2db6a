"""Run statistics: the calibrated score by hand, bootstrap intervals that cover at their nominal rate and say
"within noise" for no effect, and warnings on a run built to have a large model-level offset."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multimem import summary


def table(raw, subsets, labels=None, **extra):
    t = pd.DataFrame({"id": [str(i) for i in range(len(raw))], "subset": subsets, "multimem_raw": raw,
                      "held_f": 0.0, "held_g": 0.0, "own_f": 0.0, "own_g": 0.0, "cos_f": 0.0, **extra})
    if labels is not None:
        t["label"] = labels
    return t


def test_calibrated_score_by_hand():
    raw = [0.5, 0.1, -0.2, 0.3, 0.1, 0.2, 0.4, 0.0]
    subsets = ["candidate", "candidate", "independent", "shared", "shared", "shared", "shared", "candidate"]
    labels = ["a", "b", "a", "a", "a", "b", "b", "c"]
    cal = summary.calibration(table(raw, subsets, labels), min_per_label=2)
    # S_S mean = (0.3 + 0.1 + 0.2 + 0.4) / 4 = 0.25
    assert cal["multimem_calibrated"].tolist() == pytest.approx([0.25, -0.15, -0.45, 0.05, -0.15, -0.05, 0.15, -0.25])
    # S_S mean of label a = 0.2, of b = 0.3; label c has no S_S sample: the S_S mean 0.25
    assert cal["multimem_calibrated_label"].tolist() == pytest.approx([0.3, -0.2, -0.4, 0.1, -0.1, -0.1, 0.1, -0.25])
    # a label with fewer S_S samples than the minimum falls back to the S_S mean
    cal3 = summary.calibration(table(raw, subsets, labels), min_per_label=3)
    assert cal3["multimem_calibrated_label"].tolist() == pytest.approx(cal3["multimem_calibrated"].tolist())
    assert "multimem_calibrated_label" not in summary.calibration(table(raw, subsets))


def test_one_level_interval_agrees_with_scipy():
    x = np.random.default_rng(3).normal(0.2, 1.0, 300)
    ours = summary.mean_interval(x, seed=1, resamples=4000)
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(2))
    assert ours.estimate == pytest.approx(x.mean())
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.02)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.02)


@pytest.mark.parametrize("effect", [0.0, 0.15])
def test_paired_change_covers_the_true_change_at_the_nominal_rate(effect):
    rng = np.random.default_rng(0)
    trials, covered, noise_said = 200, 0, 0
    for t in range(trials):
        base = rng.normal(0, 1, 120)  # per-sample level shared by both runs (pairing removes it)
        before = base + rng.normal(0, 0.5, 120)
        after = base + effect + rng.normal(0, 0.5, 120)
        iv = summary.change_interval(before, after, paired=True, seed=t, resamples=500)
        covered += iv.low <= effect <= iv.high
        noise_said += iv.within_noise
    assert 0.90 <= covered / trials <= 0.99
    if effect == 0:
        assert noise_said / trials >= 0.9
    else:  # 0.15 against a standard error of about 0.065: found most of the time
        assert noise_said / trials <= 0.5


def test_replicas_widen_the_interval_with_training_noise():
    rng = np.random.default_rng(1)
    samples = rng.normal(0, 0.2, 200)
    offsets = np.array([0.3, -0.3, 0.1])  # each replica shifts every sample: training noise
    replicas = samples[None, :] + offsets[:, None]
    one = summary.mean_interval(replicas[:1])
    three = summary.mean_interval(replicas)
    assert three.replicas == 3 and one.replicas == 1
    assert (three.high - three.low) > 5 * (one.high - one.low)
    assert three.estimate == pytest.approx(replicas.mean())


def test_replica_columns_are_read_in_order():
    t = pd.DataFrame({"multimem_raw": [1.0, 2.0], "multimem_raw_r1": [5.0, 6.0], "multimem_raw_r0": [3.0, 4.0],
                      "multimem_raw_r10": [7.0, 8.0]})
    assert summary.replica_values(t).tolist() == [[3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    assert summary.replica_values(t[["multimem_raw"]]).tolist() == [[1.0, 2.0]]


def test_warnings_on_a_large_offset_and_label_spread():
    rng = np.random.default_rng(5)
    n = 100
    subsets = ["candidate"] * n + ["shared"] * n + ["independent"] * n
    labels = (["x", "y"] * (3 * n // 2))
    raw = np.concatenate([0.30 + rng.normal(0, 0.02, n), 0.25 + rng.normal(0, 0.02, n), 0.20 + rng.normal(0, 0.02, n)])
    t = table(raw, subsets, labels, held_f=0.25)
    d = summary.diagnostics(t)
    assert d["offset"]["estimate"] == pytest.approx(raw[n:2 * n].mean())
    assert d["gap_candidate_shared"]["estimate"] == pytest.approx(raw[:n].mean() - raw[n:2 * n].mean())
    assert d["held_difference"] == pytest.approx(0.25)
    assert any("models differ as a whole" in w for w in d["warnings"])
    # a run with no offset and a clear gap: no warning
    calm = np.concatenate([0.30 + rng.normal(0, 0.02, n), rng.normal(0, 0.02, n), -0.30 + rng.normal(0, 0.02, n)])
    assert summary.diagnostics(table(calm, subsets, labels))["warnings"] == []
    # labels that differ: S_S of label x scores +0.2, of y −0.2
    spread = calm + np.where(np.array(labels) == "x", 0.2, -0.2)
    d = summary.diagnostics(table(spread, subsets, labels))
    assert d["label_spread_shared"] > 0.25
    assert any("Labels differ more than samples do" in w for w in d["warnings"])
    # S_C clearly below S_S: no memorization to rank either
    below = np.concatenate([-0.2 + rng.normal(0, 0.02, n), rng.normal(0, 0.02, n), -0.30 + rng.normal(0, 0.02, n)])
    assert any("S_C does not score above S_S" in w for w in summary.diagnostics(table(below, subsets, labels))["warnings"])
