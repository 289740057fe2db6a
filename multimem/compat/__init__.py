"""Old module paths, kept importable for one release after the package moved into layers (README, Layout).

`import multimem.runs` still works: it is the same module object as `multimem.store.runs` (so patching either name
patches both). Modules that were split in several have a re-export module here (explore, mitigate,
strategy_options, source_files). Project code never imports an old path (tests/test_layers.py); this table is the
list of what moved where.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "multimem.app_cache": "multimem.app.cache",
    "multimem.app_curation": "multimem.app.curation",
    "multimem.app_ui": "multimem.app.ui",
    "multimem.atomic": "multimem.store.atomic",
    "multimem.augment": "multimem.model.augment",
    "multimem.cli_scale": "multimem.cli.scale",
    "multimem.curation": "multimem.store.lists",
    "multimem.dataset": "multimem.data.dataset",
    "multimem.distributed": "multimem.engine.distributed",
    "multimem.embeddings": "multimem.engine.embeddings",
    "multimem.evaluate": "multimem.engine.evaluate",
    "multimem.explore": "multimem.compat.explore",
    "multimem.external": "multimem.interop.openclip_train",
    "multimem.images": "multimem.data.images",
    "multimem.index": "multimem.engine.index",
    "multimem.mitigate": "multimem.compat.mitigate",
    "multimem.models": "multimem.model.factory",
    "multimem.ondemand": "multimem.engine.pair_score",
    "multimem.presets": "multimem.pipeline.presets",
    "multimem.report": "multimem.app.report",
    "multimem.review": "multimem.store.review_mode",
    "multimem.runs": "multimem.store.runs",
    "multimem.score": "multimem.engine.score",
    "multimem.sources": "multimem.data.sources",
    "multimem.sources.base": "multimem.data.sources.base",
    "multimem.sources.files": "multimem.compat.source_files",
    "multimem.sources.twemoji": "multimem.data.sources.twemoji",
    "multimem.splits": "multimem.data.splits",
    "multimem.staging": "multimem.store.staging",
    "multimem.strategy_options": "multimem.compat.strategy_options",
    "multimem.sweep": "multimem.mitigation.sweep",
    "multimem.tokenizer": "multimem.model.tokenizer",
    "multimem.train": "multimem.engine.train",
}


class OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old path with its new module (first in sys.meta_path, so that an old package's submodules are
    never loaded a second time under the old name)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # importlib sets the alias's spec on the module: put its own back
        return module

    def exec_module(self, module) -> None:  # the new module is already executed
        if module.__spec__.loader_state is not None and module.__spec__.loader is self:
            module.__spec__ = module.__spec__.loader_state


def install() -> None:
    if not any(isinstance(f, OldPaths) for f in sys.meta_path):
        sys.meta_path.insert(0, OldPaths())
