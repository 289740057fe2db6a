"""webdataset tar shards (`key.jpg|png|webp` beside `key.txt` or `key.json`), read with the `webdataset`
package's tar iterator; brace-expanded shard lists; each decode opens its own file handle."""
from __future__ import annotations

import json
import os
import tarfile
import zlib
from pathlib import Path
from typing import Any

from multimem.data.images import SHARD_SUFFIXES, TAR_SEP, DamagedShard, is_shard_path, shard_index, shard_stem
from multimem.data.sources.base import DataError, DataSource, Pair, absolute_path, clean_caption

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")  # preference order when one key has several


def _expand_shards(paths: str | os.PathLike | list) -> list[Path]:
    """Shard paths from a path, a list, a folder of .tar/.tar.gz/.tgz, or brace patterns like shard-{000..009}.tar."""
    from braceexpand import braceexpand  # what webdataset expands its URLs with

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    shards: list[Path] = []
    for item in items:
        if Path(item).is_dir():
            found = sorted(p for suffix in SHARD_SUFFIXES for p in Path(item).glob(f"*{suffix}") if p.is_file())
            if not found:
                raise DataError(f"{absolute_path(item)}: no .tar, .tar.gz or .tgz shards in this folder")
            shards += [absolute_path(p) for p in found]
            continue
        for name in braceexpand(str(item)):
            if not Path(name).is_file():
                raise DataError(f"{absolute_path(name)}: shard not found")
            if not is_shard_path(name):
                raise DataError(f"{absolute_path(name)}: a webdataset shard must be a .tar, .tar.gz or .tgz file; "
                                "rename it or give the folder of shards")
            shards.append(absolute_path(name))
    if not shards:
        raise DataError("webdataset: no shards given")
    return shards


def _split_key(member: str) -> tuple[str, str] | None:
    """webdataset's rule: the key is the name up to the first dot of the basename, the rest is the extension."""
    folder, _, base = member.rpartition("/")
    if "." not in base:
        return None
    stem, ext = base.split(".", 1)
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


class WebDatasetSource(DataSource):
    """webdataset tar shards (.tar, .tar.gz, .tgz): key.jpg/png/webp + key.txt (one caption per line), optional
    key.cls / key.json label."""

    kind = "wds"

    def __init__(self, paths: str | os.PathLike | list) -> None:
        super().__init__()
        self.paths = _expand_shards(paths)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "paths": [str(p) for p in self.paths]}

    def _read_shard(self, shard: Path) -> dict[str, dict[str, Any]]:
        """key -> {"image": member name, "captions": [...], "label": ...} for one shard, in member order.

        The members are listed by webdataset's own tar iterator (plain or compressed tars); then the shard's
        member index, which decoding reads images through, is built and checked, so that a truncated or
        corrupt shard stops here with its name instead of being read in part.
        """
        from webdataset.tariterators import tar_file_iterator

        samples: dict[str, dict[str, Any]] = {}
        try:
            stream = open(shard, "rb")  # a local file: images are read back from it by offset later
        except OSError as exc:
            raise DataError(f"{shard}: cannot open the shard ({exc.strerror}); check that it is readable") from None
        try:
            with stream:
                # skip_meta=None: members named __x__.* stay samples, as before
                for item in tar_file_iterator(stream, skip_meta=None):
                    name = item["fname"]
                    split = _split_key(name)
                    if split is None:
                        continue
                    key, ext = split
                    s = samples.setdefault(key, {"image": None, "captions": None, "label": None})
                    if ext in IMAGE_EXTS:
                        rank = IMAGE_EXTS.index(ext)
                        if s["image"] is None or rank < s["rank"]:
                            s["image"], s["rank"] = name, rank
                    elif ext in ("txt", "cls", "json"):
                        text = item["data"].decode("utf-8", errors="replace")
                        if ext == "txt":
                            s["captions"] = [c for c in map(clean_caption, text.splitlines()) if c]
                        elif ext == "cls":
                            s["label"] = clean_caption(text)
                        elif s["label"] is None:
                            s["label"] = _json_label(text)
            shard_index(str(shard))
        except (tarfile.TarError, DamagedShard, EOFError, zlib.error, OSError) as exc:
            reason = str(exc).split(" @ <", 1)[0]  # webdataset appends the stream's repr
            read = sum(s["image"] is not None for s in samples.values())
            damaged = samples or isinstance(exc, DamagedShard) or _is_tar(shard)
            what = "the shard is truncated or corrupt" if damaged else "cannot read as a tar file"
            counted = f"{read} sample was" if read == 1 else f"{read} samples were"
            raise DataError(f"{shard}: {what}: {reason}. {counted} read from it before the damage; re-create the "
                            "shard, or remove it from the data") from None
        if not any(s["image"] for s in samples.values()):
            raise DataError(f"{shard}: no images found: expected key.jpg/key.png next to key.txt")
        return samples

    def _read(self) -> list[Pair]:
        shards = [(shard, self._read_shard(shard)) for shard in self.paths]
        seen: set[str] = set()
        collide = False
        for _, samples in shards:
            collide = collide or not seen.isdisjoint(samples)
            seen.update(samples)
        pairs = []
        for shard, samples in shards:
            for key, s in samples.items():
                where = f"{shard}{TAR_SEP}{key}"
                if s["image"] is None:
                    if s["captions"] is not None:
                        self.skip(where, "no image: expected key.jpg/key.png next to key.txt")
                    continue  # metadata-only keys (e.g. a lone .json) are not samples
                if not s["captions"]:
                    self.skip(where, "no caption")
                    continue
                pairs.append(Pair(
                    id=f"{shard_stem(shard)}/{key}" if collide else key,  # keys repeat across shards: name the shard
                    image_ref=f"{shard}{TAR_SEP}{s['image']}",
                    captions=tuple(s["captions"]),
                    label=s["label"],
                    meta={"shard": shard.name, "member": s["image"]},
                ))
        return pairs


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        return False


def _json_label(text: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None  # the label is optional; a broken .json must not drop the image-caption pair
    return clean_caption(data.get("label")) if isinstance(data, dict) else None
