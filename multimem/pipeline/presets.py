"""Named settings for the embedded Twemoji demo: the default one and a `--fast` one for tests."""
from __future__ import annotations

from multimem.model import factory
from multimem.pipeline.stages import RunConfig
from multimem.engine.score import MetricConfig
from multimem.data.splits import SplitSizes
from multimem.engine.train import TrainConfig


def demo(fast: bool = False) -> RunConfig:
    if fast:
        # a few hundred samples, a tiny model, two epochs: seconds on a laptop CPU
        return RunConfig(
            source={"kind": "twemoji", "skin_tones": True, "limit": 400},
            split=SplitSizes(candidate=60, extra=80),
            inject_fraction=0.05,
            model=factory.FAST_MODEL,
            train=TrainConfig(epochs=2, batch_size=64),
            metric=MetricConfig(augmentations=2, heldout_size=80),
            workers=2,
        )
    return RunConfig(
        source={"kind": "twemoji", "skin_tones": True, "limit": None},
        split=SplitSizes(candidate=0.12, extra=0.15),
        inject_fraction=0.05,
        model=factory.DEFAULT_MODEL,
        train=TrainConfig(epochs=20, batch_size=128),
        metric=MetricConfig(augmentations=5, heldout_size=1000),
    )
