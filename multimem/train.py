"""Contrastive training of f and g with open_clip's ClipLoss, AdamW and a warm-up + cosine schedule.

Everything random is drawn per epoch from (seed, epoch): data order, augmentation and the caption drawn for each
sample. f and g share the seed schedule, and a training resumed from its last epoch checkpoint continues exactly
as if it had never stopped.
"""
from __future__ import annotations

import math
import sys
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import torch
from tqdm.auto import tqdm

from multimem import augment, models
from multimem.dataset import PairData
from multimem.tokenizer import CompactTokenizer

MODALITIES = ("image", "text")


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: float = 0.05  # fraction of all steps spent warming up
    seed: int = 0
    augment: augment.AugmentConfig = field(default_factory=augment.AugmentConfig)
    # mitigation hook (METHOD.md 4): std of Gaussian noise added to each modality's embeddings during training
    feature_noise: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        aug = d.pop("augment", None) or {}
        aug = {k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
        return cls(augment=augment.AugmentConfig(**aug), **d)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # as open_clip_train: no weight decay on gains, biases, embeddings' scales and logit_scale
    def exclude(n, p):
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if exclude(n, p) and p.requires_grad], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p) and p.requires_grad], "weight_decay": cfg.weight_decay},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def add_feature_noise(features: dict[str, torch.Tensor], noise: dict[str, float], gen: torch.Generator) -> dict:
    """Gaussian noise N(0, σ²) on the chosen modalities' embeddings; the others are returned unchanged."""
    out = dict(features)
    for modality, std in noise.items():
        if std > 0:
            x = out[modality]
            out[modality] = x + std * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return out


def epoch_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for p in folder.glob("epoch_*.pt"):
        m = re.fullmatch(r"epoch_(\d+)\.pt", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def train(
    data: PairData,
    rows: np.ndarray,
    model_name: str,
    tokenizer: CompactTokenizer,
    cfg: TrainConfig,
    work_dir: Path,
    desc: str = "train",
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[torch.nn.Module, list[dict]]:
    """Train one model on data rows `rows`; epoch checkpoints go to work_dir, the last one is resumed from."""
    torch.manual_seed(cfg.seed)
    model = models.create(model_name, seed=cfg.seed)
    mean, std, size = models.image_norm(model)
    opt = make_optimizer(model, cfg)
    loss_fn = open_clip.ClipLoss()
    n = len(rows)
    steps_per_epoch = max(1, n // cfg.batch_size) if n >= cfg.batch_size else 1
    total = steps_per_epoch * cfg.epochs
    rows_t = torch.as_tensor(rows, dtype=torch.long)

    history: list[dict] = []
    start_epoch = 0
    done = epoch_checkpoints(work_dir)
    if done:
        epoch, path = done[-1]
        ckpt = models.load_checkpoint(path)
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        history = list(ckpt.get("history", []))
        start_epoch = epoch

    model.train()
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc=desc, unit="step", dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 10)
    t0 = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        gen = augment.generator(cfg.seed, epoch)
        order = rows_t[torch.randperm(n, generator=gen)]
        params = augment.draw_view_params(n, gen, cfg.augment)
        choice = augment.draw_caption_choice(data.caption_count[order], gen)
        noise_gen = augment.generator(cfg.seed, 1_000_000 + epoch)
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            sl = slice(s * cfg.batch_size, min(n, (s + 1) * cfg.batch_size))
            batch = order[sl]
            x = augment.normalise(augment.apply_views(data.images[batch], params[sl], size), mean, std)
            tokens = data.caption_tokens(batch, choice[sl])
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg)
            out = model(x, tokens)
            feats = add_feature_noise(
                {"image": out["image_features"], "text": out["text_features"]}, cfg.feature_noise, noise_gen
            )
            loss = loss_fn(feats["image"], feats["text"], out["logit_scale"])
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{desc}: loss became {loss.item()} at epoch {epoch + 1}, step {s + 1}; "
                    f"lower the learning rate (--lr, now {cfg.lr}) and run the command again to resume"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # as open_clip_train: keep the temperature in a sane range
                model.logit_scale.clamp_(0, math.log(100))
            history.append({"epoch": epoch + 1, "step": step + 1, "loss": loss.item(), "lr": lr_at(step, total, cfg)})
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            if on_step:
                on_step(step + 1, total)
        models.save_checkpoint(
            work_dir / f"epoch_{epoch + 1}.pt", model, model_name, tokenizer,
            epoch=epoch + 1, optimizer=opt.state_dict(), history=history, train_config=cfg.to_dict(),
        )
        for e, old in epoch_checkpoints(work_dir):
            if e < epoch + 1:
                old.unlink(missing_ok=True)
    bar.close()
    model.eval()
    for h in history:
        h.setdefault("seconds", None)
    if history:
        history[-1]["seconds"] = time.time() - t0
    return model, history
