"""Reseed: f and g retrained exactly as the parent, with another training seed. Not a mitigation but the control
every mitigation needs: the change it shows is training noise alone, the floor a real effect must clear."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from multimem.errors import MitigationError
from multimem.mitigation.base import Strategy, register, setting


@dataclass
class ReseedParams:
    train_seed: int = setting(1, "int", "Training seed", "the seed f and g are retrained with (initialisation, "
                              "batch order, augmentations); everything else as the parent", main=True)

    def check(self) -> None:
        if not isinstance(self.train_seed, int) or self.train_seed < 0:
            raise MitigationError(f"training seed must be a whole number >= 0, got {self.train_seed}")


@register
class Reseed(Strategy):
    name = "reseed"
    summary = "retrain f and g as the parent with another seed: the training-noise control"
    Params = ReseedParams
    swept = "train_seed"

    def tail(self, params: ReseedParams) -> str:
        return f"reseed-{params.train_seed}"

    def child_config(self, cfg, params: ReseedParams):
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=params.train_seed))
