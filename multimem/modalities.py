"""The modality table: every modality a run can hold, and the names derived from it.

Everything downstream of the embeddings iterates over a run's modalities through this table instead of naming
image and text: the embeddings files (`f_image.npy`), the FAISS indices (one per modality and one per ordered
cross pair, `image_to_text`), the per-encoder score columns (`sslmem_image`), the noise modalities of the
mitigations, the CLI's parsing, the app's columns and neighbour tabs, and evaluation's retrieval pairs.
A run records its modalities in its settings (`config.modalities`); runs written before that hold image and text.
Standard library only: the dashboard reads this table without loading the models.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, permutations

from multimem.errors import DataError


@dataclass(frozen=True)
class Modality:
    name: str  # the key everywhere: file names, columns, index kinds, URL values
    letter: str  # one capital in pair names (the paper's AI, AT, IT)
    field: str  # the column of samples.parquet a sample's value of this modality is read from
    noun: str  # what one value is called on the page ("caption")
    plural: str


TABLE: dict[str, Modality] = {
    "image": Modality("image", "I", "image", "image", "images"),
    "text": Modality("text", "T", "caption", "caption", "captions"),
}
DEFAULT: tuple[str, ...] = ("image", "text")  # a run without `config.modalities` (every run before the table)


def register(modality: Modality) -> Modality:
    """Add a modality to the table (its encoder and loader are registered with the model and data layers)."""
    if modality.name in TABLE and TABLE[modality.name] != modality:
        raise ValueError(f"modality {modality.name!r} is registered already")
    TABLE[modality.name] = modality
    return modality


def check(names: tuple[str, ...] | list[str], what: str = "--modalities") -> tuple[str, ...]:
    """Known, distinct modality names in their given order; a bad list is a DataError naming the option."""
    names = tuple(names)
    unknown = [n for n in names if n not in TABLE]
    if unknown:
        raise DataError(f"{what}: unknown modality {unknown[0]!r}; use {', '.join(TABLE)}")
    if len(set(names)) != len(names):
        raise DataError(f"{what}: a modality is listed twice ({', '.join(names)})")
    return names


def parse(text: str, within: tuple[str, ...] = DEFAULT, what: str = "--modalities") -> tuple[str, ...]:
    """A comma-separated subset of `within` from a flag or a form field; 'all' or 'both' means every one."""
    names = [n.strip() for n in text.lower().split(",") if n.strip()]
    if names in (["all"], ["both"]):
        return tuple(within)
    if not names or any(n not in within for n in names):
        raise DataError(f"{what} must be {', '.join(within)} or all (comma-separated), got {text!r}")
    return tuple(n for n in within if n in names)


def of(config: dict | None) -> tuple[str, ...]:
    """The modalities of a run from its saved settings (a manifest's `config`)."""
    return tuple((config or {}).get("modalities") or DEFAULT)


def embedding_key(tag: str, modality: str) -> str:
    """Name of the stored clean embeddings of model `tag` (f or g): embeddings/{key}.npy."""
    return f"{tag}_{modality}"


def sslmem_column(modality: str) -> str:
    """Per-encoder SSLMem score column."""
    return f"sslmem_{modality}"


def pairs(names: tuple[str, ...]) -> list[tuple[str, str]]:
    """Unordered pairs of modalities (the pairwise MultiMem breakdowns), in table order."""
    return list(combinations(names, 2))


def pair_name(a: str, b: str) -> str:
    """A pair's short name as in the paper: image + text → IT."""
    return TABLE[a].letter + TABLE[b].letter


def pair_column(a: str, b: str) -> str:
    """The MultiMem column restricted to one pair of modalities (written when a run has more than two)."""
    return f"multimem_{pair_name(a, b).lower()}"


def cross_kind(query: str, target: str) -> str:
    """Neighbour kind / retrieval direction from one modality to another: image_to_text."""
    return f"{query}_to_{target}"


def neighbour_kinds(names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Every FAISS lookup of a run: each modality within itself, then each ordered cross pair: kind → (query
    modality, indexed modality)."""
    kinds = {m: (m, m) for m in names}
    kinds.update({cross_kind(a, b): (a, b) for a, b in permutations(names, 2)})
    return kinds


def retrieval_pairs(names: tuple[str, ...]) -> list[tuple[str, str]]:
    """Ordered (query, gallery) pairs evaluation reports recall for."""
    return list(permutations(names, 2))
