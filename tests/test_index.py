import numpy as np

from multimem.engine import index


def unit(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, d))
    x = (centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, d))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_plan_is_exact_while_small_then_ivf():
    assert index.plan(10, exact_max=100) == {"kind": "IndexFlatIP", "exact": True}
    p = index.plan(40_000, exact_max=100)
    assert p["kind"] == "IndexIVFFlat" and p["nlist"] == 800 and p["nprobe"] == index.IVF_NPROBE


def test_ivf_recall_against_exact_and_mmap_round_trip(tmp_path):
    x = unit(6000, 32)
    exact = index.build(x)
    approx = index.build(x, index.plan(len(x), exact_max=100))
    index.save(approx, tmp_path / "ivf.faiss")
    loaded = index.load(tmp_path / "ivf.faiss")
    q = x[:100]
    truth = exact.search(q, 10)[1]
    got = loaded.search(q, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
    assert recall >= 0.9
    assert (exact.search(q, 1)[1][:, 0] == np.arange(100)).all()  # a vector is its own nearest neighbour


def test_recall_at_k_is_one_for_exact_and_falls_for_a_wrong_or_coarse_index():
    x = unit(3000, 16, seed=3)
    assert index.recall_at_k(index.build(x), x, queries=50) == 1.0
    # an index whose positions mean other rows: the ids it returns are wrong, recall near 0
    assert index.recall_at_k(index.build(x[::-1].copy()), x, queries=50) < 0.05
    coarse = index.build(x, index.plan(len(x), exact_max=0))
    coarse.nprobe = 1
    one_list = index.recall_at_k(coarse, x, queries=50)
    coarse.nprobe = coarse.nlist
    assert one_list < 1.0 and index.recall_at_k(coarse, x, queries=50) == 1.0  # all lists probed: exact


def test_recall_at_k_by_hand():
    # four unit vectors; the exact top-2 of each (itself first): 0 -> {0, 1}, 1 -> {1, 0}, 2 -> {2, 3}, 3 -> {3, 1}
    x = np.array([[1, 0], [0.8, 0.6], [-1, 0], [0, 1]], np.float32)

    class Fixed:  # always answers rows 0 and 2
        def search(self, q, k):
            return None, np.array([[0, 2]] * len(q))

    # {0, 2} shares one row with the truth of rows 0, 1 and 2, none with row 3's: (1/2 + 1/2 + 1/2 + 0) / 4
    assert index.recall_at_k(Fixed(), x, queries=4, k=2) == 0.375
