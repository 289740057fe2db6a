"""`torchrun --nproc_per_node 2 -m multimem score` gives the scores of one process."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from multimem import cli
from multimem.store.runs import Run


def test_two_processes_score_like_one(tmp_path):
    args = ["--runs-root", str(tmp_path)]
    assert cli.main(["train", "--fast", "--name", "one", "--limit", "240", "--candidate", "30", "--extra", "40",
                     "--epochs", "1", *args]) == 0
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    assert cli.main(["score", "one", "--augmentations", "3", *args]) == 0
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "multimem", "score", "two", "--augmentations", "3", *args],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    one, two = Run(tmp_path, "one"), Run(tmp_path, "two")
    a, b = one.scores(), two.scores()
    assert list(a["id"]) == list(b["id"]) and len(a) == 90
    for col in ("multimem_raw", "multimem", "cmc_f", "cmc_g", "sslmem_image", "cos_f"):
        assert np.allclose(a[col], b[col], atol=1e-5), col
    for key in ("f_image", "f_text", "g_image", "g_text"):  # every sample, each rank embedding its share
        ea, eb = np.load(one.path("embeddings", f"{key}.npy")), np.load(two.path("embeddings", f"{key}.npy"))
        assert ea.shape == eb.shape == (240, ea.shape[1]) and np.allclose(ea, eb, atol=1e-5), key
        assert np.allclose(np.linalg.norm(eb, axis=1), 1, atol=1e-4), key
    assert not two.path("embeddings", ".parts").exists()
    assert two.manifest()["stages"]["score"] == "done"
    assert two.manifest()["metric"]["processes"] == 2 and one.manifest()["metric"]["processes"] == 1


def test_score_needs_both_checkpoints(tmp_path, capsys):
    assert cli.main(["score", "x", "--f-checkpoint", "f.pt", "--runs-root", str(tmp_path)]) == 2
    assert "give both --f-checkpoint and --g-checkpoint" in capsys.readouterr().err
