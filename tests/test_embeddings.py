"""Clean embeddings written in parts by several processes, then assembled in sample order."""
import numpy as np
import pytest
import torch

from multimem.engine.embeddings import EmbeddingParts, assemble, keys

KEYS = keys()  # an image-text run's: f_image, f_text, g_image, g_text


def _write(folder, n, shares, d=3):
    """Each share writes its rows in two batches, in an order unlike the row order."""
    expected = {key: np.arange(n * d, dtype=np.float32).reshape(n, d) + 1000 * k for k, key in enumerate(KEYS)}
    for rank, rows in enumerate(shares):
        parts = EmbeddingParts(folder, n, rows, rank)
        for batch in (rows[::2], rows[1::2]):
            for tag in ("f", "g"):
                parts.add(tag, batch, torch.from_numpy(expected[f"{tag}_image"][batch]),
                          torch.from_numpy(expected[f"{tag}_text"][batch]))
        parts.close()
    return expected


def test_parts_assemble_in_row_order(tmp_path):
    shares = [np.array([7, 2, 9, 0]), np.array([5, 1, 3]), np.array([8, 4, 6])]
    expected = _write(tmp_path, 10, shares)
    assemble(tmp_path, 10, world_size=3)
    for key in KEYS:
        got = np.load(tmp_path / f"{key}.npy")
        assert got.dtype == np.float32 and np.array_equal(got, expected[key]), key
    assert not (tmp_path / ".parts").exists()


def test_missing_rows_are_an_error_not_a_short_file(tmp_path):
    _write(tmp_path, 10, [np.array([0, 1, 2]), np.array([3, 4, 5])])
    with pytest.raises(RuntimeError, match="cover the 10 samples"):
        assemble(tmp_path, 10, world_size=2)
    assert not (tmp_path / "f_image.npy").exists()


def test_a_share_must_be_written_completely(tmp_path):
    parts = EmbeddingParts(tmp_path, 4, np.array([0, 1, 2, 3]))
    parts.add("f", np.array([0, 1]), torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="f_image has 2 of 4 rows"):
        parts.close()
    with pytest.raises(ValueError, match="outside this process's share"):
        parts.add("g", np.array([9]), torch.zeros(1, 3), torch.zeros(1, 3))
