"""Runs f and g over augmented views of the scored samples and calls the metric (METHOD.md sections 2-3)."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from multimem import metric, modalities
from multimem.model import augment
from multimem.model import factory
from multimem.data.dataset import PairData, image_batches
from multimem.data.splits import CANDIDATE, EXTRA, INDEPENDENT, SHARED

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
        return augment.settings_from_dict(cls, d)


class Timer:
    """Seconds spent inside the model forward passes, to compare with the whole scoring time."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self):
        self._t = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._t


def device_of(model) -> torch.device:
    return next(model.parameters()).device


# Inputs go to the model's device (a GPU when scoring runs on one) and embeddings come back to the CPU, where the
# metric, the run files and the indices work.
@torch.no_grad()
def encode_images(model, x: torch.Tensor) -> torch.Tensor:
    return model.encode_image(x.to(device_of(model)), normalize=True).float().cpu()


@torch.no_grad()
def encode_texts(model, tokens: torch.Tensor) -> torch.Tensor:
    return model.encode_text(tokens.to(device_of(model)), normalize=True).float().cpu()


@torch.no_grad()
def iter_clean(model, data: PairData, rows: np.ndarray, batch_size: int = 512, timer: Timer | None = None):
    """Yield (row batch, image, first-caption) embeddings of data rows without augmentation, one batch at a time."""
    mean, std, size = factory.image_norm(model)
    timer = timer or Timer()
    for batch, pixels in image_batches(data.images, torch.as_tensor(rows, dtype=torch.long), batch_size, data.workers):
        x = augment.normalise(augment.clean_view(pixels, size), mean, std)
        tokens = data.caption_tokens(batch)
        with timer:
            image, text = encode_images(model, x), encode_texts(model, tokens)
        yield batch.numpy(), image, text


def embed_clean(model, data: PairData, rows: np.ndarray, batch_size: int = 512, timer: Timer | None = None):
    """Image and first-caption embeddings (no augmentation) of data rows: two N×d tensors."""
    img, txt = [], []
    for _, i, t in iter_clean(model, data, rows, batch_size, timer):
        img.append(i)
        txt.append(t)
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


class ViewBatch(NamedTuple):
    start: int  # position of the first row of the batch in `rows`
    rows: np.ndarray  # B data rows
    views: torch.Tensor  # B × A × 2 × d: image and caption embedding of each view
    clean: torch.Tensor | None  # B × 2 × d: un-augmented image and first caption (when asked for)


@torch.no_grad()
def iter_views(model, data: PairData, rows: np.ndarray, cfg: MetricConfig, timer: Timer | None = None, desc="",
               clean: bool = False):
    """Yield a ViewBatch per batch of data rows: the A views of each row, and its clean view if `clean`.

    Only one batch of embeddings exists at a time, so memory does not grow with the number of scored samples.
    Within a batch each distinct caption is embedded once and gathered per view; the clean view reuses the decoded
    images (no second pass over the data).
    """
    mean, std, size = factory.image_norm(model)
    timer = timer or Timer()
    rows_t = torch.as_tensor(rows, dtype=torch.long)
    params_t, choice_t = view_draws(data, rows, cfg)
    a = cfg.augmentations
    per_batch = max(1, cfg.batch_size // a)
    start = 0
    batches = image_batches(data.images, rows_t, per_batch, data.workers)
    for batch, pixels in tqdm(batches, total=-(-len(rows_t) // per_batch), desc=desc or "embed views", unit="batch",
                              leave=False, mininterval=1 if sys.stderr.isatty() else 30):
        b = len(batch)
        end = start + b
        x = augment.normalise(augment.apply_views(pixels.repeat_interleave(a, 0), params_t[start:end].flatten(0, 1), size), mean, std)
        choice = choice_t[start:end]
        if clean:  # caption 0 of each row rides along with the view captions
            choice = torch.cat([choice, torch.zeros(b, 1, dtype=choice.dtype)], dim=1)
        unique, inverse = view_captions(data, batch.numpy(), choice)
        clean_x = augment.normalise(augment.clean_view(pixels, size), mean, std) if clean else None
        with timer:
            image = encode_images(model, x).view(b, a, -1)
            text = encode_texts(model, data.tokens_at(unique))[inverse].view(b, choice.shape[1], -1)
            clean_image = encode_images(model, clean_x) if clean else None
        views = torch.stack([image, text[:, :a]], dim=2)
        yield ViewBatch(start, batch.numpy(), views, torch.stack([clean_image, text[:, a]], dim=1) if clean else None)
        start = end


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


def score_rows(f, g, data: PairData, rows: np.ndarray, held: np.ndarray, cfg: MetricConfig, timer: Timer,
               on_clean: Callable[[str, np.ndarray, torch.Tensor, torch.Tensor], None] | None = None) -> pd.DataFrame:
    """Raw scores and their parts for data rows (no normalisation: that needs the whole scored set).

    Everything is computed batch by batch into per-row columns, so memory grows only by those few floats per row.
    `on_clean(tag, rows, image, text)` receives each batch's clean embeddings (the pipeline stores them).
    """
    n = len(rows)
    cols: dict[str, np.ndarray] = {"row": rows}
    cmc, dist = {}, {}
    for tag, model in (("f", f), ("g", g)):
        hi, ht = embed_clean(model, data, held, cfg.batch_size, timer)
        h = metric.held_summary(torch.stack([hi, ht], dim=1))  # H: M × 2 × d -> d
        own, held_term, cos = (np.zeros(n, np.float32) for _ in range(3))
        dist[tag] = np.zeros((len(modalities.DEFAULT), n), np.float32)
        for batch in iter_views(model, data, rows, cfg, timer, desc=f"score {tag}", clean=True):
            terms = metric.cmc(batch.views, h)
            sl = slice(batch.start, batch.start + len(batch.rows))
            own[sl], held_term[sl] = terms.own.numpy(), terms.held.numpy()
            for m in range(len(modalities.DEFAULT)):  # per-encoder view distance for SSLMem
                dist[tag][m, sl] = metric.view_distance(batch.views[:, :, m]).numpy()
            cos[sl] = (batch.clean[:, 0] * batch.clean[:, 1]).sum(-1).numpy()
            if on_clean is not None:
                on_clean(tag, batch.rows, batch.clean[:, 0], batch.clean[:, 1])
        cmc[tag] = own - held_term
        cols[f"own_{tag}"], cols[f"held_{tag}"], cols[f"cmc_{tag}"], cols[f"cos_{tag}"] = own, held_term, cmc[tag], cos
    cols["multimem_raw"] = cmc["f"] - cmc["g"]  # metric.multimem on the batched terms
    for m, modality in enumerate(modalities.DEFAULT):  # the views' modality order
        cols[modalities.sslmem_column(modality)] = dist["g"][m] - dist["f"][m]  # metric.sslmem: L(g, x) − L(f, x)
    return pd.DataFrame(cols)


COLUMNS = ["row", "multimem", "multimem_raw", "cmc_f", "cmc_g", "own_f", "held_f", "own_g", "held_g",
           *(modalities.sslmem_column(m) for m in modalities.DEFAULT), "cos_f", "cos_g"]


def combine_replicas(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One table from K replica tables of the same rows (METHOD.md 6): CMC terms, SSLMem and cosines averaged over
    the replicas of each model, so multimem_raw is the mean of the K paired differences d_k; `multimem_se` is
    sd_k(d_k) / sqrt(K) and each d_k is kept as `multimem_raw_r{k}`. One replica: its table unchanged."""
    if len(tables) == 1:
        return tables[0]
    k = len(tables)
    out = pd.DataFrame({"row": tables[0]["row"].to_numpy()})
    for col in tables[0].columns.drop("row"):
        out[col] = np.mean([t[col].to_numpy() for t in tables], axis=0)
    d = np.stack([t["multimem_raw"].to_numpy() for t in tables])
    out["multimem_se"] = d.std(axis=0, ddof=1) / np.sqrt(k)
    for i in range(k):
        out[f"multimem_raw_r{i}"] = d[i]
    return out


def score(f, g, data: PairData, cfg: MetricConfig, on_clean=None) -> tuple[pd.DataFrame, dict] | tuple[None, None]:
    """The scores table (one row per scored sample) and a summary with the normalisation range and timings.

    `f` and `g` are models or equally long lists of replicas (replica k of f is paired with replica k of g; every
    replica sees the same views). Under torchrun every rank scores its shard and rank 0 gets the whole table;
    other ranks get (None, None). `on_clean`: see score_rows (first replica only, on every rank for its shard).
    """
    from multimem.engine import distributed

    fs, gs = (list(m) if isinstance(m, (list, tuple)) else [m] for m in (f, g))
    t0 = time.perf_counter()
    timer = Timer()
    rows, held = scored_rows(data, cfg), heldout_rows(data, cfg)
    mine = distributed.shard(rows)
    tables = [distributed.gather_frames(score_rows(fk, gk, data, mine, held, cfg, timer, on_clean if k == 0 else None))
              for k, (fk, gk) in enumerate(zip(fs, gs))]
    if tables[0] is None:
        return None, None
    table = combine_replicas(tables)
    norm, value_range = metric.normalise(torch.from_numpy(table["multimem_raw"].to_numpy(copy=True)))
    table["multimem"] = norm.numpy()
    raw = table["multimem_raw"]
    summary = {
        "normalisation": {"method": "range", "range": value_range, "min": float(raw.min()), "max": float(raw.max())},
        "n_scored": int(len(rows)),
        "heldout": int(len(held)),
        "replicas": len(fs),
        "processes": distributed.world_size(),
        "seconds": time.perf_counter() - t0,
        "forward_seconds": timer.seconds,
    }
    return table[COLUMNS + [c for c in table.columns if c not in COLUMNS]], summary
