"""Scoring across processes: `torchrun --nproc_per_node N -m multimem score RUN`.

torchrun sets RANK / WORLD_SIZE; each rank embeds its shard of the scored samples (gloo on CPU, nccl on GPU) and
rank 0 gathers the rows and writes the one run. View draws do not depend on the shard (see score.view_draws), so
the result equals a single-process run up to float rounding.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_env() -> bool:
    """Join the process group torchrun describes; False (and nothing done) in a plain single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":  # one GPU per rank on each node; gather_object's tensors travel on the current device
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    # share the machine's cores instead of each rank taking all of them
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))))
    return True


def device() -> torch.device:
    """Where this process runs the models: its own GPU when there are GPUs, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def shard(rows: np.ndarray) -> np.ndarray:
    """This rank's contiguous share of `rows`."""
    return np.array_split(rows, world_size())[rank()]


def gather_frames(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Concatenate every rank's frame on rank 0 (in rank order); other ranks get None."""
    if world_size() == 1:
        return frame
    parts: list = [None] * world_size() if is_main() else None
    dist.gather_object(frame, parts, dst=0)
    return pd.concat(parts, ignore_index=True) if is_main() else None


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
