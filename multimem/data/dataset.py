"""The run's samples in memory: split, injected mis-captions, decoded images and tokenized captions."""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from multimem.data import images as imgs
from multimem.data.sources.base import DataSource, Pair
from multimem.data.splits import CANDIDATE, INDEPENDENT, SHARED, SplitSizes, make_split
from multimem.model.tokenizer import CompactTokenizer


def fingerprint(pairs: list[Pair]) -> str:
    """sha256 over ids, captions, labels and image references: two runs on the same data share it."""
    h = hashlib.sha256()
    for p in sorted(pairs, key=lambda p: p.id):
        h.update(json.dumps([p.id, p.image_ref.rsplit("/", 1)[-1], list(p.captions), p.label]).encode())
    return h.hexdigest()[:16]


def inject_miscaptions(
    pairs: list[Pair], split: dict[str, str], fraction: float, seed: int
) -> tuple[list[Pair], dict[str, str]]:
    """Swap the captions of a seeded `fraction` of each training subset among themselves (a random cycle).

    Returns the new pairs and {id: original first caption} for the injected ones. Partners come from the same
    subset, so the number of samples per subset and the split stay as they were; a partner of the same label is
    avoided where possible so that the swapped caption is really wrong (not a skin-tone sibling's name).
    """
    if fraction <= 0:
        return pairs, {}
    rng = np.random.default_rng(seed)
    by_id = {p.id: p for p in pairs}
    new_captions: dict[str, tuple[str, ...]] = {}
    for subset in (SHARED, CANDIDATE, INDEPENDENT):
        members = sorted(i for i, s in split.items() if s == subset)
        k = int(round(fraction * len(members)))
        if k < 2:
            continue
        chosen = [members[i] for i in rng.choice(len(members), size=k, replace=False)]
        # sorted by label, each takes the captions of the sample half the list away: mostly another label,
        # never a skin-tone sibling (siblings sit next to each other in this order)
        chosen.sort(key=lambda i: (str(by_id[i].label), str(by_id[i].meta.get("base", "")), i))
        for j, a in enumerate(chosen):
            new_captions[a] = by_id[chosen[(j + k // 2) % k]].captions
    out, injected = [], {}
    for p in pairs:
        if p.id in new_captions and new_captions[p.id] != p.captions:
            injected[p.id] = p.caption
            p = Pair(p.id, p.image_ref, new_captions[p.id], p.label, p.meta)
        out.append(p)
    return out, injected


@dataclass
class PairData:
    """Column-oriented samples: row i of every field is sample i."""

    pairs: list[Pair]
    subset: np.ndarray  # str per sample
    injected: np.ndarray  # bool per sample
    original_caption: list[str | None]
    images: torch.Tensor | StreamedImages  # uint8 N×3×S×S, or decoded per batch
    workers: int = 2  # DataLoader workers that decode streamed images ahead of the model
    tokens: torch.Tensor | None = None  # all captions, flat: T×L int32 (half of int64's bytes per sample)
    caption_start: torch.Tensor | None = None  # N
    caption_count: torch.Tensor | None = None  # N

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.pairs]

    def rows(self, *subsets: str) -> np.ndarray:
        return np.flatnonzero(np.isin(self.subset, subsets))

    def tokenize(self, tokenizer: CompactTokenizer) -> None:
        texts = [c for p in self.pairs for c in p.captions]
        counts = torch.tensor([len(p.captions) for p in self.pairs])
        self.tokens = torch.cat([tokenizer(texts[i : i + 8192]).int() for i in range(0, len(texts), 8192)])
        self.caption_count = counts
        self.caption_start = torch.cumsum(counts, 0) - counts

    def caption_tokens(self, rows: torch.Tensor, choice: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens (int64, as the models take them) of caption `choice[k]` (default the first) of sample rows[k]."""
        idx = self.caption_start[rows] + (0 if choice is None else choice)
        return self.tokens_at(idx)

    def tokens_at(self, caption_index: torch.Tensor) -> torch.Tensor:
        return self.tokens[caption_index].long()

    def table(self) -> pd.DataFrame:
        """One row per sample: what the run directory's samples.parquet holds."""
        meta = pd.DataFrame([p.meta for p in self.pairs])
        df = pd.DataFrame(
            {
                "id": self.ids,
                "subset": self.subset,
                "caption": [p.caption for p in self.pairs],
                "captions": [list(p.captions) for p in self.pairs],
                "label": [p.label for p in self.pairs],
                "image_ref": [p.image_ref for p in self.pairs],
                "injected": self.injected,
                "original_caption": self.original_caption,
            }
        )
        for col in meta.columns:
            if col not in df.columns:
                df[col] = meta[col].values
        return df


class StreamedImages:
    """Images decoded when a batch asks for them: memory stays flat however many samples there are.

    Supports what the code asks of the in-memory uint8 tensor: `len()` and indexing by a tensor of rows.
    """

    def __init__(self, source: DataSource, refs: list[str], size: int) -> None:
        self.source, self.refs, self.size = source, list(refs), size

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, rows) -> torch.Tensor:
        if isinstance(rows, (list, np.ndarray)) or (isinstance(rows, torch.Tensor) and rows.dtype == torch.bool):
            rows = torch.as_tensor(rows)
        if isinstance(rows, torch.Tensor) and rows.dtype == torch.bool:
            rows = rows.nonzero().flatten()
        rows = rows.tolist() if isinstance(rows, torch.Tensor) else list(rows)
        return torch.stack([imgs.to_tensor(self.source.open_image(self.refs[i]), self.size) for i in rows])

    def subset(self, keep: list[int]) -> "StreamedImages":
        return StreamedImages(self.source, [self.refs[i] for i in keep], self.size)


class _RowBatches(torch.utils.data.Dataset):
    def __init__(self, images, batches: list[torch.Tensor]) -> None:
        self.images, self.batches = images, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[self.batches[i]]


def image_batches(images, rows: torch.Tensor, batch_size: int, workers: int = 2):
    """Yield (row batch, uint8 images) over `rows` in order, `batch_size` rows at a time (see batch_images)."""
    yield from batch_images(images, [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)], workers)


def batch_images(images, batches: list[torch.Tensor], workers: int = 2):
    """Yield (row batch, uint8 images) for each batch of rows; streamed images are decoded by DataLoader workers
    ahead of the consumer, in-memory ones are indexed."""
    if isinstance(images, torch.Tensor) or workers <= 0:
        for b in batches:
            yield b, images[b]
        return
    loader = torch.utils.data.DataLoader(_RowBatches(images, batches), batch_size=None, num_workers=workers,
                                         prefetch_factor=2, persistent_workers=False)
    yield from zip(batches, loader)


def validate_images(source: DataSource, pairs: list[Pair], workers: int = 4) -> list[bool]:
    """Decode every image once and forget it (streaming mode): unreadable ones are recorded and flagged False."""

    def one(p: Pair):
        try:
            source.open_image(p.image_ref)
            return None
        except (imgs.ImageError, OSError) as exc:
            return str(exc)

    ok = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for p, err in zip(pairs, tqdm(pool.map(one, pairs), total=len(pairs), desc="check images", unit="img",
                                      leave=False)):
            if err:
                source.skip(p.image_ref, err)
            ok.append(err is None)
    return ok


def load_images(source: DataSource, pairs: list[Pair], size: int, workers: int = 4) -> tuple[torch.Tensor, list[bool]]:
    """Decode every image to uint8 size×size; undecodable ones are recorded with source.skip and flagged False."""

    def one(p: Pair):
        try:
            return imgs.to_tensor(source.open_image(p.image_ref), size), None
        except (imgs.ImageError, OSError) as exc:
            return None, str(exc)

    out = torch.zeros(len(pairs), 3, size, size, dtype=torch.uint8)
    ok = [False] * len(pairs)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, (tensor, err) in enumerate(
            tqdm(pool.map(one, pairs), total=len(pairs), desc="decode images", unit="img", leave=False)
        ):
            if tensor is None:
                source.skip(pairs[i].image_ref, err or "cannot decode")
            else:
                out[i] = tensor
                ok[i] = True
    return out, ok


def build(
    source: DataSource,
    sizes: SplitSizes,
    split_seed: int,
    inject_fraction: float,
    inject_seed: int,
    store_size: int,
    workers: int = 4,
    stream: bool = False,
) -> PairData:
    """Source -> decoded, split, mis-caption-injected samples (split after skipping unusable images).

    stream=False decodes every image into one uint8 tensor (fast training on small data); stream=True keeps only
    references and decodes batches on demand (flat memory for large scored sets).
    """
    pairs = source.pairs()
    if stream:
        ok = validate_images(source, pairs, workers)
        images = StreamedImages(source, [p.image_ref for p in pairs], store_size)
    else:
        images, ok = load_images(source, pairs, store_size, workers)
    keep = [i for i, good in enumerate(ok) if good]
    pairs = [pairs[i] for i in keep]
    images = images.subset(keep) if stream else images[keep]
    split = make_split([p.id for p in pairs], sizes, split_seed)
    used = [i for i, p in enumerate(pairs) if p.id in split]
    pairs, images = [pairs[i] for i in used], (images.subset(used) if stream else images[used])
    pairs, injected = inject_miscaptions(pairs, split, inject_fraction, inject_seed)
    return PairData(
        pairs=pairs,
        subset=np.array([split[p.id] for p in pairs]),
        injected=np.array([p.id in injected for p in pairs]),
        original_caption=[injected.get(p.id) for p in pairs],
        images=images,
    )
