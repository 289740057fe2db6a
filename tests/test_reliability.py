"""Nothing lost: a killed job resumes to the same result; two jobs never write one run at once."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from multimem import cli
from multimem.store.runs import Run, RunError, check_name

ARGS = ["demo", "--fast", "--epochs", "4", "--limit", "240", "--candidate", "30", "--extra", "40"]


def start(root, name):
    return subprocess.Popen([sys.executable, "-m", "multimem", *ARGS, "--name", name, "--runs-root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_kill_9_during_training_then_resume_equals_uninterrupted(tmp_path):
    proc = start(tmp_path, "killed")
    work = tmp_path / "killed" / "checkpoints" / "work_f"
    deadline = time.time() + 300
    while time.time() < deadline and not list(work.glob("epoch_*.pt")):
        time.sleep(0.05)
    assert list(work.glob("epoch_*.pt")), "training never wrote an epoch checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = Run(tmp_path, "killed")
    assert killed.status() == "incomplete"  # "running" in the manifest, but no live job holds the lock
    assert not killed.path("scores.parquet").exists()
    assert start(tmp_path, "killed").wait() == 0
    assert start(tmp_path, "clean").wait() == 0
    a, b = killed.scores(), Run(tmp_path, "clean").scores()
    assert killed.status() == "complete"
    assert list(a["id"]) == list(b["id"])
    assert np.allclose(a["multimem_raw"], b["multimem_raw"], atol=1e-6)


def test_a_second_job_on_the_same_run_is_refused(tmp_path, capsys):
    run = Run(tmp_path, "busy")
    with run.lock():
        assert cli.main([*ARGS, "--name", "busy", "--runs-root", str(tmp_path)]) == 2
    assert "being written by another job" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../x", "/etc", "a/b", "..", ".hidden", "", "x" * 101, "a\\b", "ok\n"])
def test_run_names_never_become_paths_outside_the_root(name):
    with pytest.raises(RunError):
        check_name(name)


def test_symlinked_run_outside_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "evil").symlink_to(outside)
    with pytest.raises(RunError, match="outside the runs folder"):
        Run(tmp_path / "root", "evil")
