"""A mitigated run derived from a baseline run (METHOD.md 4), whatever the strategy (multimem.mitigation.base).

A mitigated run is an ordinary run directory: same data source, split sizes and seed, and injection settings as
its parent, so the same samples land in the same subsets and the two scores tables share ids. Its manifest records
    lineage = {"parent": PARENT, "mitigation": {"strategy": ..., every parameter}}
and "mitigation" (what was done and what it cost); its scores carry the raw differences and the normalisation
range shared with the parent, never only a per-run range. `plan` is the one check of a mitigation against its
parent: `mitigate`, the dashboard's job start and sweeps all go through it before anything is written.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multimem.errors import MitigationError, RunError
from multimem.mitigation.base import child_name, get, make_params, params_dict, same_as_parent
from multimem.mitigation.compare import compare, cost_of
from multimem.store.runs import COMPLETE, Run, check_name


def open_parent(root: Path | str, name: str) -> tuple[Run, dict]:
    try:
        parent = Run(root, name)
    except RunError as exc:
        raise MitigationError(f"parent run: {exc}") from None
    if not parent.exists():
        raise MitigationError(f"unknown parent run {name!r}: no run of that name in {root} (see `multimem runs`)")
    m = parent.manifest()
    if "config" not in m:
        raise MitigationError(f"parent run {name!r} has no saved settings; it cannot be mitigated")
    return parent, m


@dataclass
class Plan:
    """A checked mitigation: the parent, the derived run's name, settings and lineage."""

    parent: Run
    parent_manifest: dict
    strategy: str
    params: Any
    name: str
    config: Any  # the derived run's RunConfig
    lineage: dict


def plan(root: Path | str, parent_name: str, strategy: str, params=None, name: str | None = None,
         replicas: int | None = None) -> Plan:
    """Every check of a mitigation against its parent, before anything is written (MitigationError if one fails).

    `replicas`: seeds of f and g the derived run trains (default: the parent's)."""
    from multimem.pipeline.config import RunConfig

    s = get(strategy)
    params = params if params is not None else make_params(strategy)
    parent, pm = open_parent(root, parent_name)
    cfg = RunConfig.from_dict(pm["config"])
    if s.needs_scores and (parent.status() != COMPLETE or not parent.files.scores.exists()):
        raise MitigationError(f"parent run {parent_name!r} is {parent.status()}; {strategy} needs a complete "
                              "(scored) run")
    s.check_parent({**pm, "name": parent_name}, cfg, params)
    if replicas is not None and replicas < 1:
        raise MitigationError(f"--replicas must be at least 1, got {replicas}")
    if s.fixed_replicas and replicas not in (None, cfg.replicas):
        raise MitigationError(f"{strategy} works on each of the parent's {cfg.replicas} replicas: --replicas "
                              "cannot change that; leave it out")
    if same_as_parent(cfg, strategy, params):
        raise MitigationError(f"parent run {parent_name!r} already trains that way ({params_dict(strategy, params)}); "
                              "nothing to derive")
    if replicas is not None and replicas != cfg.replicas:
        name = name or f"{child_name(parent_name, strategy, params)}.r{replicas}"
    name = check_name(name or child_name(parent_name, strategy, params))
    if name == parent_name:
        raise MitigationError("the derived run needs a name other than its parent's")
    config = s.child_config(cfg, params)
    if replicas is not None:
        config = dataclasses.replace(config, replicas=replicas)
    lineage = {"parent": parent_name, "mitigation": params_dict(strategy, params)}
    return Plan(parent, pm, strategy, params, name, config, lineage)


def mitigate(root: Path | str, parent_name: str, strategy: str, params=None, name: str | None = None,
             replicas: int | None = None) -> dict:
    """Create (or resume) the mitigated run derived from `parent_name`; returns its manifest."""
    from multimem.pipeline.stages import STAGES, execute

    p = plan(root, parent_name, strategy, params, name, replicas)
    run = Run(root, p.name)
    if run.exists():
        old = run.manifest().get("lineage") or {}
        if old != p.lineage:
            raise MitigationError(f"run {p.name!r} exists and is not this mitigation of {parent_name!r} "
                                  f"({old.get('mitigation')}); pick another --name")
    else:
        # the parent's token map: the derived run tokenizes exactly as the parent (fine-tuning needs it)
        run.update(model=p.parent_manifest.get("model"), lineage=p.lineage)
    execute(run, p.config, STAGES, lineage=p.lineage, stage_fns=get(strategy).stages(p.parent, p.params))
    m = run.manifest()
    if m.get("status") == COMPLETE:
        m = run.update(mitigation={"strategy": strategy, "cost": cost_of(p.parent_manifest, m, strategy)},
                       comparison=compare(p.parent, run))
    return m
