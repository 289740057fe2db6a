"""A run's settings (RunConfig): data, split, injection, model, training, metric, replicas; saved in the manifest
and compared when a run resumes."""
from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimem.data.splits import SplitSizes
from multimem.engine.score import MetricConfig
from multimem.engine.train import TrainConfig
from multimem.model import factory


@dataclass
class RunConfig:
    source: dict[str, Any] = field(default_factory=lambda: {"kind": "twemoji"})
    split: SplitSizes = field(default_factory=SplitSizes)
    split_seed: int = 0
    inject_fraction: float = 0.0  # share of each training subset given another sample's captions (ground truth)
    inject_seed: int = 0
    model: str = factory.DEFAULT_MODEL
    train: TrainConfig = field(default_factory=TrainConfig)
    metric: MetricConfig = field(default_factory=MetricConfig)
    prompt_template: str | None = None  # zero-shot prompt; None: the source's own
    workers: int = 4
    stream: bool = False  # decode images per batch (flat memory) instead of holding them all decoded
    # K seeds of f and K of g on the same split (METHOD.md 6): replica k trains with train.seed + k; scores average
    # the K paired differences and keep their standard error. 1 is the paper's score.
    replicas: int = 1

    def to_dict(self) -> dict:
        """JSON-shaped (tuples as lists), so it compares equal to what the manifest holds."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        return cls(
            split=SplitSizes(**d.pop("split")),
            train=TrainConfig.from_dict(d.pop("train")),
            metric=MetricConfig.from_dict(d.pop("metric")),
            **d,
        )


def versions() -> dict[str, str]:
    import faiss
    import open_clip

    import multimem

    return {
        "multimem": multimem.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


SPLIT_FIELDS = ("source", "split", "split_seed", "inject_fraction", "inject_seed", "model")


def same_split(a: RunConfig, b: RunConfig) -> bool:
    """The same data, split, injection and model (tokenizer): all a split-only run (`multimem split`) has fixed, so
    the training and metric settings of the stages still to run may differ."""
    return all(a.to_dict()[k] == b.to_dict()[k] for k in SPLIT_FIELDS)
