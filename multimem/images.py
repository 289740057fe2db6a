"""Decoding images safely into RGB and into one uint8 tensor the models read."""
from __future__ import annotations

import io
import tarfile
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

# Larger images are refused before they are decoded (decompression bombs).
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

TAR_SEP = "#"


class ImageError(ValueError):
    pass


@lru_cache(maxsize=8)
def _tar_members(path: str) -> tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]:
    tf = tarfile.open(path)
    return tf, {m.name: m for m in tf.getmembers() if m.isfile()}


def read_bytes(ref: str) -> bytes:
    """Bytes of an image reference: a file path or `shard.tar#member`."""
    if TAR_SEP in ref and ref.split(TAR_SEP, 1)[0].endswith(".tar"):
        shard, member = ref.split(TAR_SEP, 1)
        tf, members = _tar_members(shard)
        if member not in members:
            raise ImageError(f"{shard}: no member {member!r}")
        return tf.extractfile(members[member]).read()
    path = Path(ref)
    if not path.is_file():
        raise ImageError(f"{ref}: file not found")
    return path.read_bytes()


def decode(data: bytes, where: str = "image") -> Image.Image:
    """RGB image from bytes; transparency is composed onto white. Raises ImageError with `where` named."""
    if not data:
        raise ImageError(f"{where}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"{where}: {img.width}x{img.height} is larger than {MAX_PIXELS} pixels")
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{where}: refused, too large to decode safely ({exc})") from None
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr / top * 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def open_image(ref: str) -> Image.Image:
    return decode(read_bytes(ref), ref)


def to_tensor(img: Image.Image, size: int):
    """uint8 tensor 3×size×size (bicubic resize of the whole image; crops happen in augment)."""
    import torch  # here, not at the top: the dashboard reads runs without loading torch

    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
