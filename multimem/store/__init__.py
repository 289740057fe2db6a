"""The run directory: atomic writes, the layout of a run's files, manifests, locks, lists (no torch)."""
