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

from multimem.config import NOISE_SPACES
from multimem.model import augment
from multimem.model import factory
from multimem.data.dataset import PairData, batch_images
from multimem.model.tokenizer import CompactTokenizer

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
    # where that noise enters: "normalised" = on the l2-normalised embeddings that enter the loss (noise norm
    # σ√d against 1), "raw" = on the projection outputs before l2-normalisation (then normalised as usual)
    feature_noise_space: str = "normalised"
    # caption diversity (METHOD.md 4): how many of each sample's captions the per-step draw chooses among
    # (the first k); None: all of them, 1: always the first (one fixed caption)
    captions_per_image: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return augment.settings_from_dict(cls, d)


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



def contrastive_loss(model, x, tokens, loss_fn, noise: dict[str, float], gen: torch.Generator,
                     space: str = "normalised"):
    """One training step's forward pass: ClipLoss on the (optionally noised) image and text embeddings.

    Returns the loss and the features the loss saw, so that a test can check which modalities were noised.
    """
    if space not in NOISE_SPACES:
        raise TrainingError(f"feature noise space must be one of {', '.join(NOISE_SPACES)}, got {space!r}")
    if space == "raw" and any(std > 0 for std in noise.values()):
        raw = add_feature_noise({"image": model.encode_image(x), "text": model.encode_text(tokens)}, noise, gen)
        feats = {k: torch.nn.functional.normalize(v, dim=-1) for k, v in raw.items()}
        return loss_fn(feats["image"], feats["text"], model.logit_scale.exp()), feats
    out = model(x, tokens)
    feats = add_feature_noise({"image": out["image_features"], "text": out["text_features"]}, noise, gen)
    return loss_fn(feats["image"], feats["text"], out["logit_scale"]), feats


def caption_counts(data: PairData, rows: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Captions the per-step draw chooses among for each row: all of them, or the first `captions_per_image`."""
    counts = data.caption_count[rows]
    if cfg.captions_per_image is not None:
        counts = counts.clamp(max=max(1, int(cfg.captions_per_image)))
    return counts


@dataclass
class Regrouping:
    """In-training regrouping (METHOD.md 4): every `every` epochs, score the training rows with `score`
    (epoch, model, rows) -> one memorization score per row (higher: more memorized); the top `top` share are
    put into their own mini-batches and only they get the targeted augmentation (stronger image views drawn with
    `hot_augment`, and token dropout with probability `token_dropout` on their captions)."""

    every: int
    score: Callable[[int, torch.nn.Module, np.ndarray], np.ndarray]
    top: float = 0.05
    hot_augment: augment.AugmentConfig = field(
        default_factory=lambda: augment.AugmentConfig(crop_scale=(0.25, 1.0), brightness=0.5, contrast=0.5, saturation=0.5)
    )
    token_dropout: float = 0.1
    log: list[dict] = field(default_factory=list)  # one entry per rescoring: epoch, n_hot, seconds, rows

    def due(self, epoch: int) -> bool:
        return self.every > 0 and epoch > 0 and epoch % self.every == 0

    def pick(self, scores: np.ndarray) -> np.ndarray:
        """Positions of the top `top` share of scores (at least one)."""
        k = max(1, int(math.ceil(self.top * len(scores))))
        return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:k])


def plan_batches(hot: torch.Tensor, batch_size: int, steps: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Positions (into the epoch's order) of each step's batch, `steps` batches in all.

    `hot` flags the positions to group: they fill their own batches (as many as they need, at most steps - 1),
    the others fill the remaining batches in order (a remainder is dropped, as in plain training), and the hot
    batches take seeded random places among the steps.
    """
    n = len(hot)
    pos = torch.arange(n)
    if steps <= 1 or not bool(hot.any()):
        return [pos[s * batch_size : min(n, (s + 1) * batch_size)] for s in range(steps)] if steps > 1 else [pos]
    hot_pos, cold_pos = pos[hot], pos[~hot]
    n_hot = min(steps - 1, int(math.ceil(len(hot_pos) / batch_size)))
    hot_batches = list(torch.tensor_split(hot_pos, n_hot))
    cold_batches = [cold_pos[i * batch_size : (i + 1) * batch_size] for i in range(steps - n_hot)]
    slots = set(torch.randperm(steps, generator=gen)[:n_hot].tolist())
    out, h, c = [], iter(hot_batches), iter(cold_batches)
    for s in range(steps):
        out.append(next(h) if s in slots else next(c))
    return out


def drop_tokens(tokens: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Drop each word token (not start, end or padding) with probability p, keeping at least one; shift left."""
    if p <= 0 or len(tokens) == 0:
        return tokens
    pos = torch.arange(tokens.shape[1])
    eot = tokens.argmax(-1, keepdim=True)  # the end token has the largest id (open_clip's argmax pooling)
    inner = (pos > 0) & (pos < eot)
    drop = inner & (torch.rand(tokens.shape, generator=gen) < p)
    drop[(drop == inner).all(-1)] = False  # never drop every word of a caption
    keep = ~drop & (pos <= eot)
    order = torch.sort((~keep).int(), dim=1, stable=True).indices
    out = torch.gather(tokens, 1, order)
    out[torch.arange(tokens.shape[1]) >= keep.sum(-1, keepdim=True)] = 0
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
    init_state: dict | None = None,
    until_epoch: int | None = None,
    keep_epochs: tuple[int, ...] = (),
    regroup: Regrouping | None = None,
) -> tuple[torch.nn.Module, list[dict]]:
    """Train one model on data rows `rows`; epoch checkpoints go to work_dir, the last one is resumed from.

    Mitigation options (all off by default): `init_state` starts from given weights instead of a fresh model
    (fine-tuning); `until_epoch` stops after that epoch of the cfg.epochs schedule; `keep_epochs` are epoch
    checkpoints never pruned (snapshots); `regroup` is in-training regrouping (see Regrouping).
    """
    torch.manual_seed(cfg.seed)
    model = factory.create(model_name, seed=cfg.seed)
    if init_state is not None:
        model.load_state_dict(init_state)
    mean, std, size = factory.image_norm(model)
    opt = make_optimizer(model, cfg)
    loss_fn = open_clip.ClipLoss()
    n = len(rows)
    steps_per_epoch = max(1, n // cfg.batch_size) if n >= cfg.batch_size else 1
    total = steps_per_epoch * cfg.epochs
    rows_t = torch.as_tensor(rows, dtype=torch.long)

    history: list[dict] = []
    start_epoch = 0
    hot_rows, hot_epoch = None, None  # regrouping: data rows grouped now, and the epoch they were scored at
    done = epoch_checkpoints(work_dir)
    if done:
        epoch, path = done[-1]
        ckpt = factory.load_checkpoint(path)
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        history = list(ckpt.get("history", []))
        start_epoch = epoch
        if regroup is not None and ckpt.get("hot_rows") is not None:
            hot_rows, hot_epoch = ckpt["hot_rows"], ckpt.get("hot_epoch")
            regroup.log[:] = list(ckpt.get("regroup_log", []))
    last_epoch = cfg.epochs if until_epoch is None else min(cfg.epochs, until_epoch)

    model.train()
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc=desc, unit="step", dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 10)
    t0 = time.time()
    for epoch in range(start_epoch, last_epoch):
        gen = augment.generator(cfg.seed, epoch)
        order = rows_t[torch.randperm(n, generator=gen)]
        params = augment.draw_view_params(n, gen, cfg.augment)
        choice = augment.draw_caption_choice(caption_counts(data, order, cfg), gen)
        noise_gen = augment.generator(cfg.seed, 1_000_000 + epoch)
        batches = [slice(s * cfg.batch_size, min(n, (s + 1) * cfg.batch_size)) for s in range(steps_per_epoch)]
        hot = None
        if regroup is not None:  # its draws come from their own streams: plain training's draws are unchanged
            if regroup.due(epoch) and hot_epoch != epoch:
                t_score = time.time()
                model.eval()
                scores = regroup.score(epoch, model, rows)
                model.train()
                hot_rows, hot_epoch = torch.as_tensor(rows[regroup.pick(scores)], dtype=torch.long), epoch
                regroup.log.append({"epoch": epoch, "n_hot": int(len(hot_rows)), "seconds": time.time() - t_score,
                                    "rows": hot_rows.tolist()})
            if hot_rows is not None:
                rgen = augment.generator(cfg.seed, 2_000_000 + epoch)
                hot = torch.isin(order, hot_rows)
                batches = plan_batches(hot, cfg.batch_size, steps_per_epoch, rgen)
                params[hot] = augment.draw_view_params(n, rgen, regroup.hot_augment)[hot]
        # streamed images are decoded by DataLoader workers ahead of the step that needs them
        pixel_batches = batch_images(data.images, [order[sl] for sl in batches], data.workers)
        for s, (batch, pixels) in enumerate(pixel_batches):
            step = epoch * steps_per_epoch + s
            sl = batches[s]
            x = augment.normalise(augment.apply_views(pixels, params[sl], size), mean, std)
            tokens = data.caption_tokens(batch, choice[sl])
            if hot is not None and regroup.token_dropout > 0 and bool(hot[sl].any()):
                h = hot[sl]
                tokens = tokens.clone()
                tokens[h] = drop_tokens(tokens[h], regroup.token_dropout, rgen)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg)
            loss, _ = contrastive_loss(model, x, tokens, loss_fn, cfg.feature_noise, noise_gen, cfg.feature_noise_space)
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
        extra = {} if regroup is None else {"hot_rows": hot_rows, "hot_epoch": hot_epoch, "regroup_log": regroup.log}
        factory.save_checkpoint(
            work_dir / f"epoch_{epoch + 1}.pt", model, model_name, tokenizer,
            epoch=epoch + 1, optimizer=opt.state_dict(), history=history, train_config=cfg.to_dict(), **extra,
        )
        for e, old in epoch_checkpoints(work_dir):
            if e < epoch + 1 and e not in keep_epochs:
                old.unlink(missing_ok=True)
    bar.close()
    model.eval()
    for h in history:
        h.setdefault("seconds", None)
    if history:
        history[-1]["seconds"] = time.time() - t0
    return model, history
