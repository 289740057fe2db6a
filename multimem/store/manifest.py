"""Typed reading of a run's manifest.json: one accessor per fact, so no caller walks the raw dict.

A manifest is written by the pipeline stage by stage and by older versions of this project, so every part may be
missing; each accessor says what it returns then (an empty dict, None, the default modalities). Writing stays
with `Run.update`, which merges dicts key by key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from multimem import modalities


def _part(m: Mapping[str, Any], *keys: str) -> dict:
    """The nested dict at m[k1][k2]..., or {} when any level is missing or not a dict."""
    for key in keys:
        m = m.get(key) if isinstance(m, Mapping) else None
        if not isinstance(m, Mapping):
            return {}
    return dict(m)


@dataclass(frozen=True)
class Manifest:
    data: Mapping[str, Any]

    # state
    @property
    def timings(self) -> dict[str, float]:
        return _part(self.data, "timings")

    # settings
    @property
    def config(self) -> dict:
        return _part(self.data, "config")

    @property
    def modalities(self) -> tuple[str, ...]:
        return modalities.of(self.config)

    @property
    def model_name(self) -> str | None:
        return _part(self.data, "model").get("name") or self.config.get("model")

    @property
    def model(self) -> dict:
        """What the models were made from: name, token_map, unknown_tokens, external (imported checkpoints)."""
        return _part(self.data, "model")

    @property
    def dataset(self) -> dict:
        return _part(self.data, "dataset")

    @property
    def split_sizes(self) -> dict[str, int]:
        return _part(self.data, "split", "sizes")

    # results
    @property
    def normalisation(self) -> dict:
        return _part(self.data, "metric", "normalisation")

    @property
    def summary(self) -> dict:
        return _part(self.data, "summary")

    @property
    def injected_auc(self) -> float | None:
        return self.summary.get("injected_auc")

    def utility(self, tag: str = "f") -> dict:
        """Model `tag`'s retrieval recalls and zero-shot accuracy ({} before evaluation)."""
        return _part(self.data, "utility", tag)

    # lineage
    @property
    def lineage(self) -> dict:
        return _part(self.data, "lineage")

    @property
    def parent(self) -> str | None:
        return self.lineage.get("parent")

    @property
    def mitigation(self) -> dict:
        """What a mitigation did and cost (its settings are in lineage["mitigation"])."""
        return _part(self.data, "mitigation")

    @property
    def comparison(self) -> dict:
        return _part(self.data, "comparison")
