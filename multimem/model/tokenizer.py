"""open_clip's BPE tokenizer, optionally followed by a compact vocabulary.

The small CPU configs use a few thousand text embeddings instead of open_clip's 49,408: most of a tiny model's
training time otherwise goes into updating embedding rows no caption uses. The mapping (compact id -> open_clip BPE
id) is saved in every checkpoint as `token_map`, so a checkpoint stays usable with plain open_clip: tokenize with
open_clip, then apply the map (see `CompactTokenizer.from_checkpoint`).
"""
from __future__ import annotations

from collections import Counter

import open_clip
import torch

FULL_VOCAB = 49408
PAD, UNK = 0, 1  # compact ids: 0 keeps open_clip's padding, 1 stands for any BPE id outside the map


class CompactTokenizer:
    """Callable like an open_clip tokenizer: list of texts -> LongTensor (N, context_length)."""

    def __init__(self, model_name: str, context_length: int, token_map: list[int] | None = None) -> None:
        self.model_name = model_name
        self.context_length = context_length
        self.base = open_clip.get_tokenizer(model_name, context_length=context_length)
        self.token_map = token_map
        self._lookup = None
        if token_map is not None:
            if token_map[PAD] != 0 or token_map[UNK] != -1 or token_map[2:] != sorted(token_map[2:]):
                raise ValueError("token_map must start with [0, -1] followed by ascending BPE ids")
            # ascending order keeps the end-of-text token the largest id, which open_clip's argmax pooling relies on
            lookup = torch.full((FULL_VOCAB,), UNK, dtype=torch.long)
            lookup[0] = PAD
            lookup[torch.tensor(token_map[2:], dtype=torch.long)] = torch.arange(2, len(token_map))
            self._lookup = lookup

    @classmethod
    def fit(cls, model_name: str, context_length: int, vocab_size: int, texts: list[str]) -> "CompactTokenizer":
        """Keep the `vocab_size - 2` most frequent BPE ids of `texts` (start/end tokens always kept)."""
        base = open_clip.get_tokenizer(model_name, context_length=context_length)
        if vocab_size >= FULL_VOCAB:
            return cls(model_name, context_length, None)
        counts: Counter[int] = Counter()
        for start in range(0, len(texts), 4096):
            ids = base(texts[start : start + 4096]).flatten()
            counts.update(ids[ids != 0].tolist())
        sot, eot = base.sot_token_id, base.eot_token_id
        counts[sot] = counts[eot] = 1 << 60
        kept = sorted(i for i, _ in counts.most_common(vocab_size - 2))
        return cls(model_name, context_length, [0, -1] + kept)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        ids = self.base(list(texts))
        return ids if self._lookup is None else self._lookup[ids]

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, model_name: str, context_length: int) -> "CompactTokenizer":
        return cls(model_name, context_length, checkpoint.get("token_map"))
