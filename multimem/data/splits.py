"""Seeded split of a dataset into shared / candidate / independent / extra sets (METHOD.md section 1)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from multimem.data.sources.base import DataError

SHARED, CANDIDATE, INDEPENDENT, EXTRA = "shared", "candidate", "independent", "extra"
TRAIN_F = (SHARED, CANDIDATE)  # f trains on S_S ∪ S_C
TRAIN_G = (SHARED, INDEPENDENT)  # g trains on S_S ∪ S_I


@dataclass(frozen=True)
class SplitSizes:
    """Sizes as counts (>= 1) or fractions of the dataset (< 1). Shared takes what is left when None.

    |S_I| always equals |S_C| (METHOD.md: the independent set mirrors the candidates).
    """

    candidate: float = 0.12
    extra: float = 0.15
    shared: float | None = None

    def counts(self, n: int) -> dict[str, int]:
        def count(value: float, name: str) -> int:
            if value < 0:
                raise DataError(f"split size --{name} must be >= 0, got {value}")
            return int(round(value * n)) if value < 1 else int(value)

        c, e = count(self.candidate, "candidate"), count(self.extra, "extra")
        rest = n - 2 * c - e
        s = rest if self.shared is None else count(self.shared, "shared")
        if c < 1 or e < 1 or s < 1 or 2 * c + e + s > n:
            raise DataError(
                f"dataset has {n} usable samples, too few for shared={s}, candidate={c}, independent={c}, extra={e}; "
                "lower --candidate/--extra/--shared or use a larger dataset"
            )
        return {SHARED: s, CANDIDATE: c, INDEPENDENT: c, EXTRA: e}

    def to_dict(self) -> dict:
        return asdict(self)


def make_split(ids: list[str], sizes: SplitSizes, seed: int) -> dict[str, str]:
    """id -> subset. Deterministic in (ids as a set, sizes, seed): the ids are sorted before the permutation."""
    ordered = sorted(ids)
    counts = sizes.counts(len(ordered))
    perm = np.random.default_rng(seed).permutation(len(ordered))
    out: dict[str, str] = {}
    start = 0
    for subset in (CANDIDATE, INDEPENDENT, EXTRA, SHARED):
        for i in perm[start : start + counts[subset]]:
            out[ordered[i]] = subset
        start += counts[subset]
    return out  # ids beyond the four sizes (when shared is set explicitly) stay unused
