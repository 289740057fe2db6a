"""Settings vocabulary shared by layers that cannot import each other (standard library only)."""
from __future__ import annotations

# where feature noise enters training (METHOD.md 4): "normalised" = on the l2-normalised embeddings the loss sees
# (noise norm σ√d against 1); "raw" = on the projection outputs before l2-normalisation (then normalised as usual)
NOISE_SPACES = ("normalised", "raw")
