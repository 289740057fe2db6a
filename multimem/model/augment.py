"""Seeded, batched augmentations shared by training and scoring.

Every draw is a function of (seed, stream) alone and is made for all samples at once, then sliced: f and g see the
same views, a batch or shard boundary changes nothing, and a resumed training repeats the interrupted epoch exactly.
Image views are random resized crop + horizontal flip + colour jitter, done for a whole batch with one
`grid_sample` call instead of a Python loop over images.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.5, 1.0)  # area fraction kept by the random resized crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5  # probability of a horizontal flip
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "AugmentConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in (d or {}).items()})


def settings_from_dict(cls, d: dict):
    """A settings dataclass holding an `augment: AugmentConfig` from its JSON form (as saved in a manifest)."""
    d = dict(d)
    return cls(augment=AugmentConfig.from_dict(d.pop("augment", None)), **d)


def generator(seed: int, *stream: int) -> torch.Generator:
    """An independent generator for one (seed, stream...) pair, e.g. (seed, epoch) or (seed, view)."""
    g = torch.Generator()
    key = seed
    for s in stream:
        key = (key * 1_000_003 + int(s) + 1) % (2**63 - 1)
    g.manual_seed(key)
    return g


def draw_view_params(n: int, gen: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """n × 7 tensor: crop width, height, centre x, centre y (grid units), flip sign, brightness, contrast, saturation."""
    u = torch.rand(n, 8, generator=gen)
    lo, hi = cfg.crop_scale
    area = lo + (hi - lo) * u[:, 0]
    log_r = torch.log(torch.tensor(cfg.crop_ratio))
    ratio = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * u[:, 1])
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1 - w) * (2 * u[:, 2] - 1)
    cy = (1 - h) * (2 * u[:, 3] - 1)
    flip = torch.where(u[:, 4] < cfg.flip, -1.0, 1.0)
    bright = 1 + cfg.brightness * (2 * u[:, 5] - 1)
    contrast = 1 + cfg.contrast * (2 * u[:, 6] - 1)
    sat = 1 + cfg.saturation * (2 * u[:, 7] - 1)
    return torch.stack([w, h, cx, cy, flip, bright, contrast, sat], dim=1)


def apply_views(images: torch.Tensor, params: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 B×3×S×S images + B×8 params -> float B×3×size×size in [0, 1].

    The crop is resampled at the stored resolution S and then resized to `size` exactly as `clean_view` resizes,
    so a view with augmentation switched off (identity params) is the clean view, and crops are antialiased alike.
    """
    x = images.float().div_(255)
    b, _, h, w = x.shape
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = params[:, 0] * params[:, 4]
    theta[:, 0, 2] = params[:, 2]
    theta[:, 1, 1] = params[:, 1]
    theta[:, 1, 2] = params[:, 3]
    grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
    x = resize(F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False), size)
    x = x * params[:, 5].view(b, 1, 1, 1)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = (x - gray.mean(dim=(2, 3), keepdim=True)) * params[:, 6].view(b, 1, 1, 1) + gray.mean(dim=(2, 3), keepdim=True)
    x = gray + (x - gray) * params[:, 7].view(b, 1, 1, 1)
    return x.clamp_(0, 1)


def identity_params(n: int) -> torch.Tensor:
    """View parameters that change nothing: the whole image, no flip, no colour change."""
    return torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]]).repeat(n, 1)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """The one resize of stored pixels to the model's input: bilinear with antialiasing (torchvision's
    `Resize((size, size), antialias=True)` on a tensor does the same)."""
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def clean_view(images: torch.Tensor, size: int) -> torch.Tensor:
    """The whole image resized, no augmentation: what retrieval, indices and zero-shot use."""
    return resize(images.float().div_(255), size)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean) / std


def draw_caption_choice(counts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """For each sample with counts[i] captions, a uniformly drawn caption index in [0, counts[i])."""
    return (torch.rand(len(counts), generator=gen) * counts).long().clamp_(max=counts - 1)
