"""Mitigation strategies (METHOD.md 4): the registry and its metadata (base; no torch), one module per strategy,
the K-fold reference models (kfold), deriving a run from its parent (derive), before/after (compare), sweeps.

Importing the package registers the shipped strategies, in the order the CLI and the Runs page list them; a new
strategy is one module with a `@register`ed `Strategy` subclass (see base)."""
# isort: off
from multimem.mitigation import noise, captions, removal, regroup, reseed  # noqa: F401  (registers them)
