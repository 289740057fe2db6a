"""A box or lasso drawn on the Browse scatter: its form in a link, in a plotly selection event, and which points
it holds."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Region:
    """A box or lasso drawn on the Browse scatter, in data coordinates of the axes x and y."""

    kind: str  # "box" or "lasso"
    xs: tuple[float, ...]  # box: (x0, x1); lasso: the polygon's x coordinates
    ys: tuple[float, ...]

    def to_param(self) -> str:
        nums = [v for pair in zip(self.xs, self.ys) for v in pair]
        return self.kind + ":" + ",".join(f"{v:.5g}" for v in nums)

    @classmethod
    def from_param(cls, text: str) -> "Region":
        kind, _, rest = text.partition(":")
        if kind not in ("box", "lasso"):
            raise ValueError(f"selection kind must be box or lasso, got {kind!r}")
        nums = [float(v) for v in rest.split(",") if v != ""]
        if len(nums) % 2 or not all(math.isfinite(v) for v in nums):
            raise ValueError("selection needs pairs of finite numbers")
        xs, ys = tuple(nums[0::2]), tuple(nums[1::2])
        if (kind == "box" and len(xs) != 2) or (kind == "lasso" and not 3 <= len(xs) <= 200):
            raise ValueError("a box needs 2 corners, a lasso 3 to 200 points")
        return cls(kind, xs, ys)

    @classmethod
    def from_plotly(cls, selection: Mapping[str, Any]) -> "Region | None":
        """The last box or lasso of a plotly selection event (st.plotly_chart(on_select=...)), or None."""
        for lasso in reversed(selection.get("lasso") or []):
            xs, ys = lasso.get("x") or [], lasso.get("y") or []
            if len(xs) >= 3:
                step = max(1, math.ceil(len(xs) / 120))  # keeps links short; a hand-drawn lasso has many points
                return cls("lasso", tuple(float(v) for v in xs[::step]), tuple(float(v) for v in ys[::step]))
        for box in reversed(selection.get("box") or []):
            xs, ys = box.get("x") or [], box.get("y") or []
            if len(xs) >= 2 and len(ys) >= 2:
                return cls("box", (float(min(xs)), float(max(xs))), (float(min(ys)), float(max(ys))))
        return None

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if self.kind == "box":
            return (x >= self.xs[0]) & (x <= self.xs[1]) & (y >= self.ys[0]) & (y <= self.ys[1])
        return points_in_polygon(x, y, np.asarray(self.xs), np.asarray(self.ys))


def points_in_polygon(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over the points (loop over the polygon's edges only)."""
    inside = np.zeros(len(x), dtype=bool)
    j = len(px) - 1
    for i in range(len(px)):
        crosses = (py[i] > y) != (py[j] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = (px[j] - px[i]) * (y - py[i]) / (py[j] - py[i]) + px[i]
        inside ^= crosses & (x < x_cross)
        j = i
    return inside

