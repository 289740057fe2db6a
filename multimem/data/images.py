"""Decoding images safely into RGB and into one uint8 tensor the models read."""
from __future__ import annotations

import glob
import hashlib
import io
import os
import tarfile
import threading
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

# Larger images are refused before they are decoded (decompression bombs).
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

TAR_SEP = "#"
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


class ImageError(ValueError):
    pass


class DamagedShard(Exception):
    """A truncated or corrupt tar shard; the message says what is wrong, the caller names the shard."""


def is_shard_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(SHARD_SUFFIXES)


def split_shard_ref(ref: str) -> tuple[str, str] | None:
    """(shard, member) of a `shard.tar#member` reference (also .tar.gz/.tgz), None for a plain file path."""
    start = 0
    while (i := ref.find(TAR_SEP, start)) >= 0:  # the first '#' after a shard name: folders may hold '#' too
        if is_shard_path(ref[:i]):
            return ref[:i], ref[i + 1 :]
        start = i + 1
    return None


def is_shard_ref(ref: str) -> bool:
    """True when `ref` names a member of a webdataset shard rather than an image file."""
    return split_shard_ref(ref) is not None


def shard_stem(path: str | os.PathLike) -> str:
    """The shard's file name without .tar/.tar.gz/.tgz."""
    name = Path(path).name
    for suffix in SHARD_SUFFIXES[::-1]:  # longest first: .tar.gz before .tar
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


# ---- random access to shard members
# Every read opens its own file: a tarfile handle shared by decode threads, or inherited by forked DataLoader
# workers, moves one file position under all of them and hands back other members' bytes. Only the member index
# {name: (data offset, size)}, immutable once built, is cached and shared.


@lru_cache(maxsize=256)
def _index(path: str, size: int, mtime_ns: int) -> dict[str, tuple[int, int] | None]:
    """Member index of an uncompressed tar, keyed by its size and mtime so a rewritten file is read again.

    Raises DamagedShard unless every member's data lies inside the file and the archive ends with its
    end-of-archive block: a tar cut at a member boundary, or with a garbled header, otherwise reads as a
    shorter, valid archive in every tar reader.
    """
    members: dict[str, tuple[int, int] | None] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            while (m := tf.next()) is not None:
                if m.isreg():
                    members[m.name] = None if m.issparse() else (m.offset_data, m.size)
                tf.members = []  # keep the index only, not one TarInfo per member
            end = tf.offset
        with open(path, "rb") as f:
            f.seek(end)
            tail = f.read(tarfile.BLOCKSIZE)
    except tarfile.TarError as exc:
        raise DamagedShard(f"not a readable tar file ({exc})") from None
    if tail != tarfile.NUL * tarfile.BLOCKSIZE:
        if len(tail) < tarfile.BLOCKSIZE:
            raise DamagedShard(f"the file ends at byte {end}, before the tar's end-of-archive marker")
        raise DamagedShard(f"corrupt member header at byte {end}")
    return members


def cache_dir() -> Path:
    """Where decompressed copies of compressed shards live: $MULTIMEM_CACHE/shards, else ~/.cache/multimem/shards."""
    root = os.environ.get("MULTIMEM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "multimem")
    return Path(root) / "shards"


_DECOMPRESS = threading.Lock()  # one decompression per shard and process; os.replace settles races between processes
if hasattr(os, "register_at_fork"):  # a child forked while another thread held it must not wait forever
    os.register_at_fork(after_in_child=lambda: globals().__setitem__("_DECOMPRESS", threading.Lock()))

_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "lzma"}


@lru_cache(maxsize=4096)
def _compression(path: str, size: int, mtime_ns: int) -> str | None:
    """The module that decompresses the shard, None for a plain tar; by content, not name, as tarfile does."""
    with open(path, "rb") as f:
        head = f.read(tarfile.BLOCKSIZE)
    try:
        tarfile.TarInfo.frombuf(head, tarfile.ENCODING, "surrogateescape")
        return None  # a valid first tar header
    except tarfile.HeaderError:
        pass
    return next((mod for magic, mod in _MAGIC.items() if head.startswith(magic)), None)


def _read_chunk(src, module: str) -> bytes:
    try:
        return src.read(1 << 20)
    except Exception as exc:  # EOFError, BadGzipFile, zlib.error, LZMAError...: damaged data
        raise DamagedShard(f"its {module} data is cut short or corrupt ({exc})") from None


def _plain_tar(shard: str, st: os.stat_result) -> str:
    """An uncompressed tar with the shard's content: the shard itself, or a decompressed copy in cache_dir().

    Compressed tars (.tar.gz/.tgz, or gzip data named .tar) have no random access, so they are decompressed
    once, to a file keyed by the shard's absolute path, size and mtime (written atomically; the user's file is
    never altered; an older copy of the same shard is removed); every read then opens that copy as a plain tar.
    """
    module = _compression(shard, st.st_size, st.st_mtime_ns)
    if module is None:
        return shard
    path = os.path.abspath(shard)
    who = hashlib.sha256(path.encode()).hexdigest()[:12]
    state = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:8]
    dst = cache_dir() / f"{shard_stem(path)}-{who}-{state}.tar"
    if dst.is_file():
        return str(dst)
    from multimem.store.atomic import atomic_path

    with _DECOMPRESS:
        if dst.is_file():  # another thread made it meanwhile
            return str(dst)
        with __import__(module).open(path, "rb") as src:
            try:
                with atomic_path(dst) as tmp, open(tmp, "wb") as out:
                    while chunk := _read_chunk(src, module):
                        out.write(chunk)
            except OSError as exc:
                from multimem.errors import DataError

                raise DataError(f"{shard}: cannot write its decompressed copy to {dst.parent} ({exc}); free some "
                                "space there or set MULTIMEM_CACHE to another folder") from None
        for old in dst.parent.glob(f"{glob.escape(shard_stem(path))}-{who}-*.tar"):
            if old != dst:
                old.unlink(missing_ok=True)
    return str(dst)


def shard_index(shard: str) -> dict[str, tuple[int, int] | None]:
    """{member: (data offset, size)} of a .tar/.tar.gz/.tgz shard (None for sparse members); raises
    DamagedShard when it is truncated or corrupt, OSError when it cannot be opened."""
    local = _plain_tar(shard, os.stat(shard))
    st = os.stat(local)
    return _index(local, st.st_size, st.st_mtime_ns)


def _read_member(shard: str, member: str) -> bytes:
    try:
        st = os.stat(shard)
    except FileNotFoundError:
        raise ImageError(f"{shard}: shard not found") from None
    local = _plain_tar(shard, st)
    with open(local, "rb") as f:  # this read's own handle (see above)
        st = os.fstat(f.fileno())
        where = _index(local, st.st_size, st.st_mtime_ns).get(member, False)
        if where is False:
            raise ImageError(f"{shard}: no member {member!r}")
        if where is None:
            raise ImageError(f"{shard}: member {member!r} is a sparse file; re-create the shard without --sparse")
        offset, size = where
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise DamagedShard(f"member {member!r} is cut short")
    return data


def read_bytes(ref: str) -> bytes:
    """Bytes of an image reference: a file path or `shard.tar#member` (.tar.gz/.tgz too); safe to call from
    many threads and forked processes at once."""
    split = split_shard_ref(ref)
    if split is not None:
        try:
            return _read_member(*split)
        except DamagedShard as exc:
            from multimem.errors import DataError

            raise DataError(f"{split[0]}: the shard is truncated or corrupt: {exc}. Re-create the shard, or "
                            "remove it from the data") from None
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
