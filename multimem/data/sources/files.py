"""Data sources in the formats the open_clip ecosystem uses: CSV/TSV, webdataset tar shards, COCO captions JSON."""
from __future__ import annotations

import json
import re
import os
import tarfile
import zlib
from pathlib import Path
from typing import Any

from multimem.data.images import SHARD_SUFFIXES, TAR_SEP, DamagedShard, is_shard_path, shard_index, shard_stem
from multimem.data.sources.base import DataError, DataSource, Pair, clean_caption

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")  # preference order when one key has several


def _abs(path: str | os.PathLike) -> Path:
    # abspath, not resolve: keep the user's symlinked paths as they wrote them
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:  # image outside the folder: its absolute path is the clearest name
        return path.as_posix()


def literal_separator(sep: str | None) -> str | None:
    """The separator as the user meant it: a shell passes `--sep '\\t'` as backslash + t, which means a tab."""
    if sep is None:
        return None
    if sep == "":
        raise DataError("--sep is empty; give the column separator, e.g. ',' or '\\t' for a tab")
    if sep.lower() == "tab":
        return "\t"
    return {"\\t": "\t", "\\|": "|"}.get(sep, sep)


class CsvSource(DataSource):
    """open_clip CSV/TSV: one row per (image, caption); rows sharing an image become one multi-caption Pair."""

    kind = "csv"

    def __init__(
        self,
        path: str | os.PathLike,
        image_col: str = "filepath",
        caption_col: str = "title",
        sep: str | None = None,
        label_col: str | None = None,
        id_col: str | None = None,
    ) -> None:
        super().__init__()
        self.path = _abs(path)
        self.image_col, self.caption_col = image_col, caption_col
        self.sep, self.label_col, self.id_col = sep, label_col, id_col

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "image_col": self.image_col,
            "caption_col": self.caption_col,
            "sep": self.sep,
            "label_col": self.label_col,
            "id_col": self.id_col,
        }

    def _table(self):
        import pandas as pd

        if not self.path.is_file():
            raise DataError(f"{self.path}: file not found")
        sep = literal_separator(self.sep) or ("\t" if self.path.suffix.lower() in (".tsv", ".tab") else ",")
        # one character: pandas' C parser; longer: matched literally (pandas would read it as a regular expression)
        options = {"sep": sep} if len(sep) == 1 else {"sep": re.escape(sep), "engine": "python"}
        try:
            # strings only ("NA" is a caption, not a missing value); utf-8-sig drops an Excel BOM;
            # blank lines are kept so row numbers match the file's line numbers
            df = pd.read_csv(self.path, **options, dtype=str, keep_default_na=False,
                             encoding="utf-8-sig", skip_blank_lines=False)
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                            "save the file as UTF-8") from None
        except pd.errors.EmptyDataError:
            raise DataError(f"{self.path}: the file is empty; expected a header row and one row per image") from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{self.path}: cannot parse as {'TSV' if sep == chr(9) else 'CSV'}: {exc}") from None
        for col, option in ((self.image_col, "--image-col"), (self.caption_col, "--caption-col"),
                            (self.label_col, "--label-col"), (self.id_col, "--id-col")):
            if col is not None and col not in df.columns:
                hint = ""
                if len(df.columns) == 1 and any(c in str(df.columns[0]) for c in ",\t;|"):
                    hint = " (the file may use another separator: set --sep)"
                raise DataError(f"{self.path}: no column {col!r}; the columns are {list(df.columns)}{hint}; "
                                f"set {option} to the right column")
        return df

    def _read(self) -> list[Pair]:
        df = self._table()
        folder = self.path.parent
        groups: dict[Path, dict[str, Any]] = {}  # insertion-ordered: pairs keep the file's order
        for i, row in enumerate(df.to_dict("records")):
            where = f"{self.path}:{i + 2}"  # header is line 1 (quoted multi-line fields shift this)
            values = [str(v).strip() for v in row.values()]
            if not any(values):
                continue  # a blank line, not a sample
            ref = str(row[self.image_col]).strip()
            caption = clean_caption(row[self.caption_col])
            if not ref:
                self.skip(where, f"empty {self.image_col!r}")
                continue
            if caption is None:
                self.skip(where, f"empty caption in column {self.caption_col!r}")
                continue
            image = _abs(folder / ref)
            if not image.is_file():
                self.skip(where, f"image file not found: {image}")
                continue
            group = groups.get(image)
            if group is None:
                group = groups[image] = {
                    "id": clean_caption(row[self.id_col]) if self.id_col else None,
                    "label": clean_caption(row[self.label_col]) if self.label_col else None,
                    "captions": [],
                }
            group["captions"].append(caption)
        pairs = []
        for image, g in groups.items():
            rel = _relative(image, folder)
            pairs.append(Pair(id=g["id"] or rel, image_ref=str(image), captions=tuple(g["captions"]),
                              label=g["label"], meta={"file": rel}))
        return pairs


def _expand_shards(paths: str | os.PathLike | list) -> list[Path]:
    """Shard paths from a path, a list, a folder of .tar/.tar.gz/.tgz, or brace patterns like shard-{000..009}.tar."""
    from braceexpand import braceexpand  # what webdataset expands its URLs with

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    shards: list[Path] = []
    for item in items:
        if Path(item).is_dir():
            found = sorted(p for suffix in SHARD_SUFFIXES for p in Path(item).glob(f"*{suffix}") if p.is_file())
            if not found:
                raise DataError(f"{_abs(item)}: no .tar, .tar.gz or .tgz shards in this folder")
            shards += [_abs(p) for p in found]
            continue
        for name in braceexpand(str(item)):
            if not Path(name).is_file():
                raise DataError(f"{_abs(name)}: shard not found")
            if not is_shard_path(name):
                raise DataError(f"{_abs(name)}: a webdataset shard must be a .tar, .tar.gz or .tgz file; "
                                "rename it or give the folder of shards")
            shards.append(_abs(name))
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


class CocoSource(DataSource):
    """COCO captions JSON (captions_train2017.json): one Pair per image with all its captions."""

    kind = "coco"

    def __init__(self, annotations: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.annotations = _abs(annotations)
        self.images_dir = _abs(images_dir) if images_dir is not None else self.annotations.parent

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
            path = _abs(self.images_dir / name)
            if image_id not in captions:
                self.skip(f"{f}:image {image_id}", "no captions")
            elif not path.is_file():
                self.skip(f"{f}:image {image_id}", f"image file not found: {path}")
            else:
                pairs.append(Pair(id=image_id, image_ref=str(path), captions=tuple(captions[image_id]),
                                  meta={"file": name}))
        return pairs
