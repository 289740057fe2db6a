"""MultiMem maths (METHOD.md sections 2-3): pure functions of embedding tensors, no I/O, no models.

Shapes: `views` is N × A × n × d (samples, augmentations, modalities, dimension), rows l2-normalised;
`held` is M × n × d (the held-out set H, one view per sample) or M × A' × n × d. Nothing assumes n = 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CMCTerms:
    own: torch.Tensor  # ½ E[1ᵀ Φ_i Φ_iᵀ 1]: agreement among the sample's own modalities, N
    held: torch.Tensor  # ½ E[1ᵀ Φ_i Φ_hᵀ 1]: agreement with unrelated samples h ∈ H, N

    @property
    def cmc(self) -> torch.Tensor:
        return self.own - self.held


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def held_summary(held: torch.Tensor) -> torch.Tensor:
    """Mean over H (and its views) of the modality-summed embedding Σ_k φ_{h,k}: d.

    Averaging the second term over all h equals dotting with this mean (the term is linear in φ_h).
    """
    if held.dim() == 4:
        held = held.flatten(0, 1)
    return held.sum(dim=1).mean(dim=0)


def cmc(views: torch.Tensor, held: torch.Tensor | None) -> CMCTerms:
    """Cross-modal consistency of each sample; `held` is H's embeddings (or held_summary of them, shape d).

    With held=None the second term is 0 (CMC without a reference set).
    """
    summed = views.sum(dim=2)  # N × A × d: Σ_j φ_j per view; 1ᵀΦΦᵀ1 = ‖Σ_j φ_j‖²
    own = 0.5 * summed.pow(2).sum(-1).mean(1)
    if held is None:
        return CMCTerms(own, torch.zeros_like(own))
    h = held if held.dim() == 1 else held_summary(held)
    return CMCTerms(own, 0.5 * (summed @ h).mean(1))


def multimem(f: CMCTerms, g: CMCTerms) -> torch.Tensor:
    """Raw MultiMem: CMC_f − CMC_g. Positive: f (trained on the sample) aligns its modalities better than g."""
    return f.cmc - g.cmc


def normalise(raw: torch.Tensor, value_range: float | None = None) -> tuple[torch.Tensor, float]:
    """Raw scores divided by their range (max − min) over the scored set, or by a given shared range.

    Pass the same `value_range` to compare runs: a range taken per run rescales each run differently.
    """
    r = float(raw.max() - raw.min()) if value_range is None else float(value_range)
    return (raw / r if r > 0 else torch.zeros_like(raw)), r


def restrict(views: torch.Tensor, held: torch.Tensor | None, modalities: list[int]):
    """The views and H restricted to some modalities, for pairwise breakdowns (e.g. [0, 1])."""
    idx = torch.tensor(modalities)
    return views.index_select(2, idx), None if held is None else held.index_select(held.dim() - 2, idx)


def pairwise(f_views, g_views, f_held, g_held, j: int, k: int) -> torch.Tensor:
    """MultiMem restricted to modalities j and k (equals the full score when n = 2)."""
    fv, fh = restrict(f_views, f_held, [j, k])
    gv, gh = restrict(g_views, g_held, [j, k])
    return multimem(cmc(fv, fh), cmc(gv, gh))


def view_distance(views: torch.Tensor) -> torch.Tensor:
    """L(x) = E‖f(x') − f(x'')‖ over all pairs of distinct views of one modality: N × A × d -> N."""
    a = views.shape[1]
    if a < 2:
        return torch.zeros(views.shape[0])
    d = torch.cdist(views, views)  # N × A × A
    iu = torch.triu_indices(a, a, offset=1)
    return d[:, iu[0], iu[1]].mean(1)


def sslmem(f_views: torch.Tensor, g_views: torch.Tensor) -> torch.Tensor:
    """Per-encoder memorization (SSLMem): L(g, x) − L(f, x) for one modality's views, N × A × d each."""
    return view_distance(g_views) - view_distance(f_views)
