"""Runs f and g over augmented views of the scored samples and calls the metric (METHOD.md sections 2-3)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from multimem import augment, metric, models
from multimem.dataset import PairData, image_batches
from multimem.splits import CANDIDATE, EXTRA, INDEPENDENT, SHARED

TEXT_MODES = ("captions", "identity")


@dataclass
class MetricConfig:
    augmentations: int = 5  # A: views averaged in E[...]
    heldout_size: int = 1000  # |H|: drawn from S_E (all of it when smaller)
    shared_sample: int | None = None  # S_S samples scored for the third histogram; None: |S_C|
    text_augmentation: str = "captions"  # captions: one of the sample's captions per view; identity: the first
    seed: int = 0
    batch_size: int = 256
    augment: augment.AugmentConfig = field(default_factory=augment.AugmentConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MetricConfig":
        d = dict(d)
        aug = d.pop("augment", None) or {}
        aug = {k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
        return cls(augment=augment.AugmentConfig(**aug), **d)


class Timer:
    """Seconds spent inside the model forward passes, to compare with the whole scoring time."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self):
        self._t = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._t


@torch.no_grad()
def encode_images(model, x: torch.Tensor) -> torch.Tensor:
    return model.encode_image(x, normalize=True)


@torch.no_grad()
def encode_texts(model, tokens: torch.Tensor) -> torch.Tensor:
    return model.encode_text(tokens, normalize=True)


@torch.no_grad()
def embed_clean(model, data: PairData, rows: np.ndarray, batch_size: int = 512, timer: Timer | None = None):
    """Image and first-caption embeddings (no augmentation) of data rows: two N×d tensors."""
    mean, std, size = models.image_norm(model)
    timer = timer or Timer()
    rows_t = torch.as_tensor(rows, dtype=torch.long)
    img, txt = [], []
    for batch, pixels in image_batches(data.images, rows_t, batch_size, data.workers):
        x = augment.normalise(augment.clean_view(pixels, size), mean, std)
        tokens = data.caption_tokens(batch)
        with timer:
            img.append(encode_images(model, x))
            txt.append(encode_texts(model, tokens))
    d = model.text_projection.shape[-1] if hasattr(model, "text_projection") else 0
    empty = torch.zeros(0, d)
    return (torch.cat(img) if img else empty), (torch.cat(txt) if txt else empty)


def view_draws(data: PairData, rows: np.ndarray, cfg: MetricConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmentation parameters (N × A × 8) and caption choices (N × A) of the A views of data rows.

    Draws are made for the whole dataset and then indexed, so they do not depend on which rows are scored or how
    they are batched, and f and g (called with the same cfg) see exactly the same views.
    """
    rows_t = torch.as_tensor(rows, dtype=torch.long)
    params, choices = [], []
    for a in range(cfg.augmentations):
        gen = augment.generator(cfg.seed, 7_000_000 + a)
        params.append(augment.draw_view_params(len(data), gen, cfg.augment)[rows_t])
        if cfg.text_augmentation == "captions":
            choices.append(augment.draw_caption_choice(data.caption_count, gen)[rows_t])
        else:
            choices.append(torch.zeros(len(rows_t), dtype=torch.long))
    return torch.stack(params, 1), torch.stack(choices, 1)


def view_captions(data: PairData, rows: np.ndarray, choice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct caption indices the views use, and for each view its position among them."""
    flat = (data.caption_start[torch.as_tensor(rows, dtype=torch.long)].unsqueeze(1) + choice).flatten()
    return torch.unique(flat, return_inverse=True)


@torch.no_grad()
def embed_views(model, data: PairData, rows: np.ndarray, cfg: MetricConfig, timer: Timer | None = None, desc=""):
    """N × A × 2 × d: the image and a caption of each of A seeded views (see view_draws), l2-normalised."""
    mean, std, size = models.image_norm(model)
    timer = timer or Timer()
    rows_t = torch.as_tensor(rows, dtype=torch.long)
    params_t, choice_t = view_draws(data, rows, cfg)

    # each distinct caption of the scored rows is embedded once, then gathered per view
    unique, inverse = view_captions(data, rows, choice_t)
    text_emb = []
    for start in range(0, len(unique), cfg.batch_size * 2):
        with timer:
            text_emb.append(encode_texts(model, data.tokens[unique[start : start + cfg.batch_size * 2]]))
    text = torch.cat(text_emb)[inverse].view(len(rows_t), cfg.augmentations, -1)

    a = cfg.augmentations
    per_batch = max(1, cfg.batch_size // a)
    image, start = [], 0
    batches = image_batches(data.images, rows_t, per_batch, data.workers)
    for batch, pixels in tqdm(batches, total=-(-len(rows_t) // per_batch), desc=desc or "embed views", unit="batch", leave=False):
        views = params_t[start : start + len(batch)].flatten(0, 1)
        start += len(batch)
        x = augment.normalise(augment.apply_views(pixels.repeat_interleave(a, 0), views, size), mean, std)
        with timer:
            image.append(encode_images(model, x).view(len(batch), a, -1))
    image_t = torch.cat(image) if image else torch.zeros(0, a, text.shape[-1])
    return torch.stack([image_t, text], dim=2)


def scored_rows(data: PairData, cfg: MetricConfig) -> np.ndarray:
    """S_C, S_I and a seeded sample of S_S the size of S_C (METHOD.md: the three histograms)."""
    cand, indep, shared = data.rows(CANDIDATE), data.rows(INDEPENDENT), data.rows(SHARED)
    k = min(len(shared), cfg.shared_sample if cfg.shared_sample is not None else len(cand))
    pick = np.sort(np.random.default_rng(cfg.seed).choice(len(shared), size=k, replace=False))
    return np.concatenate([cand, indep, shared[pick]])


def heldout_rows(data: PairData, cfg: MetricConfig) -> np.ndarray:
    extra = data.rows(EXTRA)
    if len(extra) <= cfg.heldout_size:
        return extra
    return np.sort(np.random.default_rng(cfg.seed + 1).choice(extra, size=cfg.heldout_size, replace=False))


def score_rows(f, g, data: PairData, rows: np.ndarray, held: np.ndarray, cfg: MetricConfig, timer: Timer) -> pd.DataFrame:
    """Raw scores and their parts for data rows (no normalisation: that needs the whole scored set)."""
    cols: dict[str, np.ndarray] = {"row": rows}
    terms, views = {}, {}
    for tag, model in (("f", f), ("g", g)):
        hi, ht = embed_clean(model, data, held, cfg.batch_size, timer)
        views[tag] = embed_views(model, data, rows, cfg, timer, desc=f"score {tag}")
        terms[tag] = metric.cmc(views[tag], torch.stack([hi, ht], dim=1))  # H: M × 2 × d
        ci, ct = embed_clean(model, data, rows, cfg.batch_size, timer)
        cols[f"cos_{tag}"] = (ci * ct).sum(-1).numpy()
    cols["multimem_raw"] = metric.multimem(terms["f"], terms["g"]).numpy()
    for tag in ("f", "g"):
        cols[f"cmc_{tag}"] = terms[tag].cmc.numpy()
        cols[f"own_{tag}"] = terms[tag].own.numpy()
        cols[f"held_{tag}"] = terms[tag].held.numpy()
    for m, name in ((0, "image"), (1, "text")):
        cols[f"sslmem_{name}"] = metric.sslmem(views["f"][:, :, m], views["g"][:, :, m]).numpy()
    return pd.DataFrame(cols)


COLUMNS = ["row", "multimem", "multimem_raw", "cmc_f", "cmc_g", "own_f", "held_f", "own_g", "held_g",
           "sslmem_image", "sslmem_text", "cos_f", "cos_g"]


def score(f, g, data: PairData, cfg: MetricConfig) -> tuple[pd.DataFrame, dict] | tuple[None, None]:
    """The scores table (one row per scored sample) and a summary with the normalisation range and timings.

    Under torchrun every rank scores its shard and rank 0 gets the whole table; other ranks get (None, None).
    """
    from multimem import distributed

    t0 = time.perf_counter()
    timer = Timer()
    rows, held = scored_rows(data, cfg), heldout_rows(data, cfg)
    table = distributed.gather_frames(score_rows(f, g, data, distributed.shard(rows), held, cfg, timer))
    if table is None:
        return None, None
    norm, value_range = metric.normalise(torch.from_numpy(table["multimem_raw"].to_numpy(copy=True)))
    table["multimem"] = norm.numpy()
    raw = table["multimem_raw"]
    summary = {
        "normalisation": {"method": "range", "range": value_range, "min": float(raw.min()), "max": float(raw.max())},
        "n_scored": int(len(rows)),
        "heldout": int(len(held)),
        "processes": distributed.world_size(),
        "seconds": time.perf_counter() - t0,
        "forward_seconds": timer.seconds,
    }
    return table[COLUMNS], summary
