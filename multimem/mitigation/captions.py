"""Caption diversity (METHOD.md 4): f and g retrained drawing each step's caption among the first k captions of
each sample (k = 1: one fixed caption; all: every caption, the default training)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from multimem.errors import MitigationError
from multimem.mitigation.base import Strategy, register, setting


@dataclass
class CaptionParams:
    captions_per_image: int | None = setting(None, "captions", "Captions per image (K or all)",
                                             "each step draws one of the first K captions of every sample; 1 = one "
                                             "fixed caption, 'all' = every caption", main=True)

    def check(self) -> None:
        k = self.captions_per_image
        if k is not None and (not isinstance(k, int) or k < 1):
            raise MitigationError(f"captions per image must be a whole number >= 1 or 'all', got {k}")


@register
class Captions(Strategy):
    name = "captions"
    summary = "retrain f and g drawing each step's caption among the first K captions"
    Params = CaptionParams
    swept = "captions_per_image"

    def tail(self, params: CaptionParams) -> str:
        return f"captions-{params.captions_per_image or 'all'}"

    def child_config(self, cfg, params: CaptionParams):
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, captions_per_image=params.captions_per_image))
