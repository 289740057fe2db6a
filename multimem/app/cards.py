"""The image grid: readable thumbnails as data URIs inside plain HTML cards, coloured by score, in the light and
the dark theme."""
from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from typing import Sequence

from PIL import Image


def thumbnail_uri(image: Image.Image, size: int = 128) -> str:
    """A WebP data URI of the image fitted into size×size (small emoji are enlarged, so they stay readable).

    WebP keeps a 128 px emoji near 1 KiB (PNG: about 10 KiB), so a page of cards stays small on the wire."""
    img = image.convert("RGB")
    scale = size / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="WEBP", quality=90, method=4)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


PLACEHOLDER = (
    "data:image/svg+xml;base64,"
    + base64.b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128"><rect width="128" height="128" '
        b'fill="#eee"/><text x="64" y="70" font-size="14" text-anchor="middle" fill="#888">no image</text></svg>'
    ).decode("ascii")
)


@dataclass
class Card:
    """One tile of an image grid."""

    image: str  # data URI
    caption: str
    href: str | None = None
    score: float | None = None  # normalised MultiMem, coloured
    lines: list[str] = field(default_factory=list)  # small print under the caption (plain text)
    badge: str | None = None  # e.g. "injected"
    score_note: str = ""  # after the score, e.g. "± 0.012" (its standard error over replicas)
    title: str = ""  # tooltip of the score: what the number is


def score_class(score: float | None) -> str:
    """The CSS class that colours a score: high (red), above 0 (orange), at or below 0 (green), none (grey)."""
    if score is None or not math.isfinite(score):
        return "mm-s-na"
    return "mm-s-hi" if score > 0.25 else "mm-s-mid" if score > 0 else "mm-s-lo"


# Cards take the page's text colour and a translucent background, so they read in the light and the dark theme;
# the score colours have a darker set for a light page and a lighter one for a dark page (.mm-dark).
GRID_CSS = """
<style>
.mm-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(168px,1fr));gap:12px;margin:4px 0 12px}
.mm-card{border:1px solid rgba(128,128,128,.35);border-radius:8px;padding:8px;background:rgba(128,128,128,.05);
  display:flex;flex-direction:column;align-items:center;text-decoration:none !important;color:inherit !important;
  min-width:0}
.mm-card:hover,.mm-card:focus-visible{border-color:rgba(128,128,128,.9);box-shadow:0 1px 4px rgba(0,0,0,.2)}
.mm-card img{width:128px;height:128px;object-fit:contain;image-rendering:auto;background:#fafafa;border-radius:4px}
.mm-cap{font-size:.9rem;line-height:1.25;margin-top:6px;text-align:center;overflow-wrap:anywhere;color:inherit}
.mm-score{font-weight:600;font-size:.95rem;margin-top:4px}
.mm-line{font-size:.75rem;opacity:.75;text-align:center;overflow-wrap:anywhere}
.mm-se{font-weight:400;font-size:.8rem;opacity:.8}
.mm-badge{font-size:.7rem;background:#fde7e7;color:#b3261e;border-radius:4px;padding:0 5px;margin-top:3px}
.mm-s-hi{color:#b3261e}.mm-s-mid{color:#a86400}.mm-s-lo{color:#2e6b30}.mm-s-na{color:#777}
.mm-dark .mm-s-hi{color:#ff8a80}.mm-dark .mm-s-mid{color:#ffb74d}.mm-dark .mm-s-lo{color:#81c784}
.mm-dark .mm-s-na{color:#aaa}.mm-dark .mm-badge{background:#5c1d19;color:#ffcdd2}
</style>
"""


def card_html(card: Card) -> str:
    e = html.escape
    parts = [f'<img src="{e(card.image)}" alt="{e(card.caption)}">', f'<div class="mm-cap">{e(card.caption)}</div>']
    if card.score is not None:
        note = f' <span class="mm-se">{e(card.score_note)}</span>' if card.score_note else ""
        tip = f' title="{e(card.title)}"' if card.title else ""
        parts.append(f'<div class="mm-score {score_class(card.score)}"{tip}>{card.score:+.3f}{note}</div>')
    if card.badge:
        parts.append(f'<div class="mm-badge">{e(card.badge)}</div>')
    parts += [f'<div class="mm-line">{e(line)}</div>' for line in card.lines]
    inner = "".join(parts)
    if card.href:
        return f'<a class="mm-card" href="{e(card.href)}" target="_self">{inner}</a>'
    return f'<div class="mm-card">{inner}</div>'


def grid_html(cards: Sequence[Card], dark: bool = False) -> str:
    """The cards as one HTML grid; `dark`: the page has a dark background (lighter score colours)."""
    cls = "mm-grid mm-dark" if dark else "mm-grid"
    return GRID_CSS + f'<div class="{cls}">' + "".join(card_html(c) for c in cards) + "</div>"

