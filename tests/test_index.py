import numpy as np

from multimem import index


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
