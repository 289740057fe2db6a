"""Noise on representations (METHOD.md 4): f and g retrained with Gaussian noise N(0, σ²) on the embeddings of the
chosen modalities (the paper's best: σ = 0.1 on all of them)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from multimem import modalities
from multimem.config import NOISE_SPACES
from multimem.errors import MitigationError
from multimem.mitigation.base import Strategy, register, setting


@dataclass
class NoiseParams:
    std: float = setting(0.1, "float", "Noise σ (std)", "σ of the Gaussian noise N(0, σ²) added to each coordinate "
                         "of the chosen embeddings during training of f and g (the paper's best; see --noise-space)",
                         main=True)
    modalities: tuple[str, ...] = setting(modalities.DEFAULT, "modalities", "Modalities",
                                          "which embeddings get noise: a comma-separated list of modalities, or all",
                                          main=True)
    # raw: on the projection outputs before l2-normalisation (their norm is ~9-10 for mm-tiny, as for CLIP, so
    # σ = 0.1 is a mild perturbation, the paper's regime); normalised: on the unit vectors the loss sees, where
    # the noise's norm σ√d (0.8 at d = 64, 2.3 at CLIP's d = 512) rivals or exceeds the embedding's own
    noise_space: str = setting("raw", "choice", "Noise space", "where the noise enters: raw (the projection outputs, "
                               "before l2-normalisation) or normalised (the unit vectors the loss sees; noise norm "
                               "σ√d)", choices=("raw", "normalised"))

    def __post_init__(self) -> None:  # one order whatever order they were given in
        given = tuple(self.modalities)
        self.modalities = tuple(m for m in modalities.TABLE if m in given) + tuple(m for m in given if m not in modalities.TABLE)

    def check(self) -> None:
        if self.noise_space not in NOISE_SPACES:
            raise MitigationError(f"noise space must be raw or normalised, got {self.noise_space!r}")
        if not (isinstance(self.std, (int, float)) and math.isfinite(self.std) and 0 < self.std <= 10):
            raise MitigationError(f"noise std must be a number in (0, 10], got {self.std}")
        if not self.modalities:
            raise MitigationError("noise modalities: name at least one (or all)")
        modalities.check(self.modalities, "noise modalities")


@register
class Noise(Strategy):
    name = "noise"
    summary = "retrain f and g with Gaussian noise on the embeddings of chosen modalities"
    Params = NoiseParams
    swept = "std"

    def tail(self, params: NoiseParams) -> str:
        mods = "all" if set(params.modalities) == set(modalities.DEFAULT) else "-".join(params.modalities)
        return f"noise-{mods}-{params.std:g}" + ("" if params.noise_space == "raw" else f"-{params.noise_space}")

    def child_config(self, cfg, params: NoiseParams):
        noise = {m: float(params.std) for m in params.modalities}
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, feature_noise=noise,
                                                                  feature_noise_space=params.noise_space))

    def check_parent(self, manifest: dict, cfg, params: NoiseParams) -> None:
        run_mods = modalities.of(manifest.get("config"))
        missing = [m for m in params.modalities if m not in run_mods]
        if missing:
            raise MitigationError(f"noise on {', '.join(missing)}: the parent run has no such modality "
                                  f"(it has {', '.join(run_mods)})")

    def series(self, params: NoiseParams) -> str:
        return "+".join(params.modalities)
