import numpy as np
import pytest

from multimem.data.dataset import inject_miscaptions
from multimem.data.sources.base import DataError, Pair
from multimem.data.splits import SplitSizes, make_split


def ids(n):
    return [f"s{i:04d}" for i in range(n)]


def test_split_sizes_disjoint_and_mirrored():
    split = make_split(ids(1000), SplitSizes(candidate=0.1, extra=0.2), seed=3)
    counts = {s: sum(v == s for v in split.values()) for s in ("shared", "candidate", "independent", "extra")}
    assert counts == {"shared": 600, "candidate": 100, "independent": 100, "extra": 200}
    assert len(split) == 1000  # every id in exactly one subset (a dict cannot hold one twice)


def test_split_counts_and_explicit_shared():
    split = make_split(ids(500), SplitSizes(candidate=50, extra=60, shared=200), seed=0)
    counts = {s: sum(v == s for v in split.values()) for s in ("shared", "candidate", "independent", "extra")}
    assert counts == {"shared": 200, "candidate": 50, "independent": 50, "extra": 60}
    assert len(split) == 360  # the rest is unused


def test_split_deterministic_and_order_free():
    a = make_split(ids(300), SplitSizes(), seed=7)
    b = make_split(list(reversed(ids(300))), SplitSizes(), seed=7)
    c = make_split(ids(300), SplitSizes(), seed=8)
    assert a == b
    assert a != c


def test_split_too_small_names_the_parameters():
    with pytest.raises(DataError, match="10 usable samples.*--candidate"):
        make_split(ids(10), SplitSizes(candidate=5, extra=2), seed=0)


def test_injection_swaps_within_subsets_and_records_truth():
    pairs = [Pair(i, f"/x/{i}.png", (f"caption {i}", f"alt {i}"), label=f"L{k % 4}") for k, i in enumerate(ids(400))]
    split = make_split([p.id for p in pairs], SplitSizes(candidate=40, extra=40), seed=0)
    new, injected = inject_miscaptions(pairs, split, 0.1, seed=1)
    by_id = {p.id: p for p in new}
    assert len(injected) == 4 + 4 + 28  # 10% of candidate, independent and shared (280)
    for i, original in injected.items():
        assert original == f"caption {i}"
        swapped = by_id[i].captions
        assert swapped != (f"caption {i}", f"alt {i}")
        donor = swapped[0].split()[-1]
        assert split[donor] == split[i]  # partner from the same subset
    assert all(by_id[p.id].captions == p.captions for p in pairs if p.id not in injected)
    assert not any(split[i] == "extra" for i in injected)
    assert inject_miscaptions(pairs, split, 0.1, seed=1)[1] == injected  # seeded
