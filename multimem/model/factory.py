"""open_clip models: the project's small configs, creation by name, and open_clip-format checkpoints."""
from __future__ import annotations

import copy
import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import open_clip
import torch

from multimem.store.atomic import atomic_torch_save
from multimem.data.sources.base import DataError
from multimem.model.tokenizer import FULL_VOCAB, CompactTokenizer

CONFIG_DIR = Path(__file__).parent / "model_configs"
DEFAULT_MODEL = "mm-small"
FAST_MODEL = "mm-tiny"
_registered = False


def register_configs() -> None:
    """Make the shipped configs (model_configs/*.json) known to open_clip by name, once per process."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def model_config(name: str) -> dict[str, Any]:
    """The open_clip config of a model name: a shipped or built-in name, or `local-dir:FOLDER`."""
    register_configs()
    if name.startswith("hf-hub:"):
        raise DataError(f"model {name!r}: nothing is fetched from a hub here; pass a local-dir: folder or a config name")
    if name.startswith("local-dir:"):
        path = Path(name[len("local-dir:"):]) / "open_clip_config.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))["model_cfg"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"model {name!r}: cannot read model_cfg from {path} ({exc})") from None
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        known = ", ".join(sorted(open_clip.list_models())[:12])
        raise DataError(
            f"unknown model name {name!r}: use one of the shipped configs ({', '.join(shipped_models())}) "
            f"or an open_clip architecture ({known}, ...; see open_clip.list_models())"
        )
    return copy.deepcopy(cfg)


def shipped_models() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def create(name: str, seed: int | None = None, pretrained: str | None = None) -> torch.nn.Module:
    """A CPU open_clip model. `pretrained` is a local checkpoint path or None: nothing is fetched from a hub."""
    model_config(name)  # clear error for unknown names
    if pretrained is not None and not Path(pretrained).is_file():
        raise DataError(f"checkpoint {pretrained}: file not found")
    if seed is not None:
        torch.manual_seed(seed)
    with _quiet_random_init():
        model = open_clip.create_model(name, pretrained=pretrained, device="cpu", output_dict=True)
    return model


class _NoRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return "No pretrained weights loaded" not in msg and "no CLIP weights found" not in msg


@contextmanager
def _quiet_random_init():
    """open_clip warns on every model made without weights; here that is the intent (from scratch / loaded after)."""
    root = logging.getLogger()
    filt = _NoRandomInitWarning()
    root.addFilter(filt)
    try:
        yield
    finally:
        root.removeFilter(filt)


def context_length(name: str) -> int:
    return int(model_config(name)["text_cfg"].get("context_length", 77))


def vocab_size(name: str) -> int:
    return int(model_config(name)["text_cfg"].get("vocab_size", FULL_VOCAB))


def fit_tokenizer(name: str, texts: list[str]) -> CompactTokenizer:
    return CompactTokenizer.fit(name, context_length(name), vocab_size(name), texts)


def image_norm(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean, std (shaped 1×3×1×1) and input size the model's visual tower expects."""
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return mean, std, int(size)


def image_norm_from_config(name: str) -> tuple[list, list, int]:
    cfg = model_config(name)
    pre = cfg.get("preprocess_cfg", {})
    if name.startswith("local-dir:"):
        path = Path(name[len("local-dir:"):]) / "open_clip_config.json"
        pre = {**pre, **json.loads(path.read_text(encoding="utf-8")).get("preprocess_cfg", {})}
    size = cfg["vision_cfg"].get("image_size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return pre.get("mean", list(open_clip.OPENAI_DATASET_MEAN)), pre.get("std", list(open_clip.OPENAI_DATASET_STD)), int(size)


def save_checkpoint(path: Path, model: torch.nn.Module, name: str, tokenizer: CompactTokenizer, **extra: Any) -> None:
    """open_clip_train's layout ({"epoch", "name", "state_dict", ...}) plus the token map; written atomically."""
    state = {"name": name, "state_dict": model.state_dict(), "token_map": tokenizer.token_map}
    state.update(extra)
    atomic_torch_save(state, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Tensors and plain containers only (weights_only): a checkpoint cannot run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint {path}: file not found") from None
    except Exception as exc:
        raise DataError(f"checkpoint {path}: cannot be read as a torch checkpoint ({exc})") from None


def load_model(path: Path, name: str) -> tuple[torch.nn.Module, CompactTokenizer]:
    """Model + tokenizer from a checkpoint of ours or open_clip_train's; a wrong architecture is a clear error."""
    ckpt = load_checkpoint(path)
    model = create(name)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise DataError(
            f"checkpoint {path} does not fit model {name!r} ({first[1].strip() if len(first) > 1 else first[0]}); "
            "pass the model name the checkpoint was trained with"
        ) from None
    model.eval()
    return model, CompactTokenizer.from_checkpoint(ckpt if isinstance(ckpt, dict) else {}, name, context_length(name))


def store_size(model_name: str) -> int:
    """Images are kept decoded at 1.5× the model input so that random crops are taken from real detail."""
    _, _, size = image_norm_from_config(model_name)
    return int(size * 3 // 2)
