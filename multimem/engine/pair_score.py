"""Score one image + caption on demand against a run's f and g, the way the run scored its own samples.

A seeded augmented views (multimem.augment, the run's metric settings), embeddings by f and g, the CMC terms
(multimem.metric) with H = the run's held-out set (clean embeddings saved in embeddings/{f,g}_{image,text}.npy,
the same rows score.heldout_rows picked), the raw MultiMem and the normalised score with the run's own range
(manifest metric.normalisation.range), so the number sits on the same scale as the run's table.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from multimem import metric
from multimem.model import augment
from multimem.data import images
from multimem.model import factory
from multimem.engine.score import MetricConfig, encode_images, encode_texts, heldout_rows
from multimem.data.splits import EXTRA
from multimem.store.layout import RunLayout
from multimem.store.manifest import Manifest


@dataclass
class PairScore:
    multimem: float  # raw / the run's normalisation range
    multimem_raw: float
    cmc_f: float
    cmc_g: float
    own_f: float
    held_f: float
    own_g: float
    held_g: float
    cos_f: float
    cos_g: float
    augmentations: int
    value_range: float

    def to_dict(self) -> dict:
        return asdict(self)


class _Subsets:
    """The part of PairData that score.heldout_rows reads, so H is picked exactly as the run picked it."""

    def __init__(self, subset: np.ndarray) -> None:
        self.subset = subset

    def rows(self, *subsets: str) -> np.ndarray:
        return np.flatnonzero(np.isin(self.subset, subsets))


def metric_config(manifest: dict) -> MetricConfig:
    """The run's metric settings (manifest["config"]; manifest["metric"] also holds results such as the range)."""
    return MetricConfig.from_dict(Manifest(manifest).config["metric"])


def heldout(run_dir: Path, manifest: dict, samples: pd.DataFrame) -> dict[str, torch.Tensor]:
    """H for f and g: M × n × d clean embeddings (the modalities in table order) of the run's held-out rows."""
    rows = heldout_rows(_Subsets(samples["subset"].to_numpy()), metric_config(manifest))
    if len(rows) == 0:
        raise ValueError(f"run {manifest.get('name')}: no {EXTRA} samples to use as the held-out set H")
    files = RunLayout(Path(run_dir))
    return {tag: torch.stack([torch.from_numpy(np.array(np.load(files.embedding(tag, m), mmap_mode="r")[rows]))
                              for m in Manifest(manifest).modalities], dim=1) for tag in ("f", "g")}


def view_draws(cfg: MetricConfig, n_captions: int, n_all: int = 1, row: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The A view parameters (A × 8) and caption choices (A) of sample `row` out of `n_all`.

    score.iter_views draws each view for the whole data set from generator(seed, 7_000_000 + a), parameters
    first, then caption choices; an uploaded pair is row 0 of 1. Passing a run's (n_all, row) reproduces the
    views that sample got when the run was scored.
    """
    params, choices = [], []
    for a in range(cfg.augmentations):
        gen = augment.generator(cfg.seed, 7_000_000 + a)
        params.append(augment.draw_view_params(n_all, gen, cfg.augment)[row])
        if cfg.text_augmentation == "captions":
            u = torch.rand(n_all, generator=gen)[row]  # draw_caption_choice for one row
            choices.append(min(int(u * n_captions), n_captions - 1))
        else:
            choices.append(0)
    return torch.stack(params), torch.tensor(choices, dtype=torch.long)


@torch.no_grad()
def embed_pair(model, tokenizer, pixels: torch.Tensor, captions: Sequence[str], params: torch.Tensor,
               choices: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A × 2 × d view embeddings of one pair, and the cosine of its clean image and first caption."""
    mean, std, size = factory.image_norm(model)
    a = len(params)
    imgs = pixels.unsqueeze(0).repeat(a, 1, 1, 1)
    x = augment.normalise(augment.apply_views(imgs, params, size), mean, std)
    image = encode_images(model, x)
    text_all = encode_texts(model, tokenizer(list(captions)))
    text = text_all[choices]
    clean = encode_images(model, augment.normalise(augment.clean_view(pixels.unsqueeze(0), size), mean, std))
    return torch.stack([image, text], dim=1), float((clean[0] * text_all[0]).sum())


def score_pair(f, g, tokenizer, image: Image.Image, captions: Sequence[str], held: dict[str, torch.Tensor],
               cfg: MetricConfig, value_range: float, store_size: int, n_all: int = 1, row: int = 0) -> PairScore:
    """MultiMem of one pair (`captions`: its caption first, any alternatives after)."""
    captions = [c for c in captions if str(c).strip()]
    if not captions:
        raise ValueError("a caption is needed to score a pair")
    pixels = images.to_tensor(images.to_rgb(image), store_size)
    params, choices = view_draws(cfg, len(captions), n_all, row)
    terms, cos = {}, {}
    for tag, model in (("f", f), ("g", g)):
        views, cos[tag] = embed_pair(model, tokenizer, pixels, captions, params, choices)
        terms[tag] = metric.cmc(views.unsqueeze(0), held[tag])
    raw = float(metric.multimem(terms["f"], terms["g"])[0])
    return PairScore(
        multimem=raw / value_range if value_range > 0 else 0.0,
        multimem_raw=raw,
        cmc_f=float(terms["f"].cmc[0]),
        cmc_g=float(terms["g"].cmc[0]),
        own_f=float(terms["f"].own[0]),
        held_f=float(terms["f"].held[0]),
        own_g=float(terms["g"].own[0]),
        held_g=float(terms["g"].held[0]),
        cos_f=cos["f"],
        cos_g=cos["g"],
        augmentations=cfg.augmentations,
        value_range=value_range,
    )


@dataclass
class Scorer:
    """Everything needed to score pairs against one run, loaded once (the app caches one per run)."""

    f: torch.nn.Module
    g: torch.nn.Module
    tokenizer: object
    held: dict[str, torch.Tensor]
    cfg: MetricConfig
    value_range: float
    store_size: int

    @classmethod
    def from_run_dir(cls, run_dir: Path, manifest: dict, samples: pd.DataFrame) -> "Scorer":
        from multimem.model.factory import store_size

        name = Manifest(manifest).model_name
        if not name:
            raise ValueError(f"run {manifest.get('name')}: the manifest names no model")
        value_range = float(Manifest(manifest).normalisation.get("range") or 0.0)
        files = RunLayout(Path(run_dir))
        f, tok = factory.load_model(files.checkpoint("f"), name)
        g, _ = factory.load_model(files.checkpoint("g"), name)
        return cls(f, g, tok, heldout(run_dir, manifest, samples), metric_config(manifest), value_range, store_size(name))

    def score(self, image: Image.Image, captions: Sequence[str], n_all: int = 1, row: int = 0) -> PairScore:
        return score_pair(self.f, self.g, self.tokenizer, image, captions, self.held, self.cfg, self.value_range,
                          self.store_size, n_all, row)
