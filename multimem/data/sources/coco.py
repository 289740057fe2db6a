"""COCO captions JSON: images with several captions each, labels from the first category when present."""
from __future__ import annotations

import json
import os
from typing import Any

from multimem.data.sources.base import DataError, DataSource, Pair, absolute_path, clean_caption


class CocoSource(DataSource):
    """COCO captions JSON (captions_train2017.json): one Pair per image with all its captions."""

    kind = "coco"

    def __init__(self, annotations: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.annotations = absolute_path(annotations)
        self.images_dir = absolute_path(images_dir) if images_dir is not None else self.annotations.parent

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "annotations": str(self.annotations), "images_dir": str(self.images_dir)}

    def _load(self) -> dict:
        f = self.annotations
        if not f.is_file():
            raise DataError(f"{f}: file not found")
        try:
            data = json.loads(f.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError:
            raise DataError(f"{f}: not UTF-8 text; save the file as UTF-8") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{f}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        if not isinstance(data, dict):
            raise DataError(f"{f}: expected a JSON object with keys 'images' and 'annotations'")
        for key in ("images", "annotations"):
            if not isinstance(data.get(key), list):
                raise DataError(f"{f}: missing key {key!r} (a list); is this a COCO captions file?")
        return data

    def _read(self) -> list[Pair]:
        data, f = self._load(), self.annotations

        def field(obj: Any, key: str, where: str) -> Any:
            if not isinstance(obj, dict) or key not in obj:
                raise DataError(f"{f}: {where} has no key {key!r}")
            return obj[key]

        files: dict[str, str] = {}  # str(image id) -> file_name, in file order
        for i, img in enumerate(data["images"]):
            image_id = str(field(img, "id", f"images[{i}]"))
            if image_id in files:
                raise DataError(f"{f}: images[{i}] repeats image id {image_id}; every image needs a unique id")
            files[image_id] = str(field(img, "file_name", f"images[{i}]"))
        captions: dict[str, list[str]] = {}
        for i, ann in enumerate(data["annotations"]):
            image_id = str(field(ann, "image_id", f"annotations[{i}]"))
            caption = clean_caption(field(ann, "caption", f"annotations[{i}]"))
            if image_id not in files:
                self.skip(f"{f}:annotations[{i}]", f"image_id {image_id} is not in 'images'")
            elif caption is not None:
                captions.setdefault(image_id, []).append(caption)
        pairs = []
        for image_id, name in files.items():
            path = absolute_path(self.images_dir / name)
            if image_id not in captions:
                self.skip(f"{f}:image {image_id}", "no captions")
            elif not path.is_file():
                self.skip(f"{f}:image {image_id}", f"image file not found: {path}")
            else:
                pairs.append(Pair(id=image_id, image_ref=str(path), captions=tuple(captions[image_id]),
                                  meta={"file": name}))
        return pairs
