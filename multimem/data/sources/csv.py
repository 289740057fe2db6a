"""open_clip's CSV/TSV format: one row per image with its caption column (several rows per image are
several captions), image paths relative to the file's folder."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from multimem.data.sources.base import DataError, DataSource, Pair, absolute_path, clean_caption, relative_name


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
        self.path = absolute_path(path)
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
            image = absolute_path(folder / ref)
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
            rel = relative_name(image, folder)
            pairs.append(Pair(id=g["id"] or rel, image_ref=str(image), captions=tuple(g["captions"]),
                              label=g["label"], meta={"file": rel}))
        return pairs
