"""The one interface every data source implements: a list of image-caption pairs."""
from __future__ import annotations

import os
from pathlib import Path

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from multimem.errors import DataError


@dataclass(frozen=True, slots=True)  # slots: no per-sample __dict__ (millions of pairs)
class Pair:
    """One sample: an image reference, one or more captions, an optional class label, free metadata.

    `image_ref` is whatever the source needs to open the image again later (a file path, or
    `shard.tar#member` for webdataset shards); the app resolves it through `load_image`.
    """

    id: str
    image_ref: str
    captions: tuple[str, ...]
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def caption(self) -> str:
        return self.captions[0]


@dataclass
class Skipped:
    """A sample the source could not use, kept so the manifest can count and show it."""

    where: str  # file / row / member
    reason: str

    @property
    def kind(self) -> str:
        """The reason without its details ("cannot decode image", "image file not found"), to count by."""
        text = self.reason.removeprefix(f"{self.where}: ")
        for mark in (" (", ": "):
            text = text.split(mark, 1)[0]
        return text


def skipped_summary(skipped: list[Skipped], examples: int = 20) -> dict[str, Any]:
    """What the manifest keeps of the skipped samples: how many, how many for each reason, the first few."""
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s.kind] = reasons.get(s.kind, 0) + 1
    return {"count": len(skipped), "reasons": reasons,
            "examples": [{"where": s.where, "reason": s.reason} for s in skipped[:examples]]}


class DataSource:
    """Base class: subclasses fill `kind`, implement `_read()` and, when images are not plain files, `open_image`."""

    kind = "base"
    prompt_template = "a photo of {label}"  # zero-shot prompt for the dataset's class labels

    def __init__(self) -> None:
        self.skipped: list[Skipped] = []
        self._pairs: list[Pair] | None = None

    # what `open_source` needs to build this source again (kept in the run manifest)
    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def _read(self) -> list[Pair]:
        raise NotImplementedError

    def pairs(self) -> list[Pair]:
        if self._pairs is None:
            self._pairs = check_unique_ids(self._read(), self.kind)
        return self._pairs

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append(Skipped(str(where), reason))

    def open_image(self, ref: str) -> Image.Image:
        from multimem.data.images import open_image

        return open_image(ref)


def clean_caption(text: Any) -> str | None:
    """A caption as one stripped line, or None when it is empty/whitespace."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = " ".join(str(text).split())
    return text or None


def check_unique_ids(pairs: list[Pair], where: str) -> list[Pair]:
    seen: set[str] = set()
    for p in pairs:
        if p.id in seen:
            raise DataError(f"{where}: duplicate sample id {p.id!r}; give every sample a unique id")
        seen.add(p.id)
    return pairs


def absolute_path(path: str | os.PathLike) -> Path:
    """A user's path made absolute as written (symlinks kept)."""
    # abspath, not resolve: keep the user's symlinked paths as they wrote them
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def relative_name(path: Path, folder: Path) -> str:
    """A file's name relative to its dataset folder (its absolute path when outside it)."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:  # image outside the folder: its absolute path is the clearest name
        return path.as_posix()
