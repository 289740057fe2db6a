"""What the commands print: a run's headline figures, what reading its data skipped, a mitigation's
comparison with its parent, and the command to run next."""
from __future__ import annotations

from pathlib import Path

from multimem.store.manifest import Manifest
from multimem.store.runs import DEFAULT_ROOT
from multimem.summary import Interval


def print_summary(m: dict, root: Path | None = None) -> None:
    """A run's headline figures, what its data reading skipped, and the command to run next."""
    s = m.get("summary") or {}
    means = s.get("mean_multimem") or {}
    print(f"run {m['name']}: {m.get('status')}")
    print_data(m)
    for tag, t in sorted((m.get("training") or {}).items()):
        if t.get("final_epoch_loss") is not None:
            print(f"  {tag} trained {t['epochs']} epochs: mean loss of the last epoch {t['final_epoch_loss']:.3f}")
    if means:
        print("  mean normalised MultiMem: " + ", ".join(f"{k} {v:+.3f}" for k, v in means.items()))
    diag = s.get("diagnostics")
    if diag:
        offset, gap = Interval.from_dict(diag["offset"]), Interval.from_dict(diag["gap_candidate_shared"])
        print(f"  raw S_C − S_S gap {gap.text(4)}; model-level offset (S_S sample, expected 0) {offset.text(4)}")
        for warning in diag.get("warnings") or []:
            print(f"  warning: {warning}")
    if "injected_auc" in s:
        print(f"  injected mis-captions: ROC-AUC {s['injected_auc']:.3f}, "
              f"precision at top 5% {s['injected_precision_at_5pct']:.3f}")
    for tag in ("f", "g"):
        u = Manifest(m).utility(tag)
        if u:
            zs = f", zero-shot {u['zero_shot_top1']:.3f}" if "zero_shot_top1" in u else ""
            print(f"  {tag}: image->text R@5 {u['image_to_text_R@5']:.3f}, text->image R@5 {u['text_to_image_R@5']:.3f}{zs}")
    step = next_step(m, root)
    if step:
        print(f"  next: {step}")


def print_data(m: dict) -> None:
    """The samples read: how many, how many were skipped and why (the first few named), injected, unknown words."""
    d = m.get("dataset") or {}
    if not d:
        return
    skipped = d.get("skipped") or {}
    line = f"  data: {d.get('n_samples', 0)} samples used, {skipped.get('count', 0)} skipped"
    if d.get("n_injected"):
        line += f", {d['n_injected']} given another sample's captions on purpose (--inject {d.get('inject_fraction')})"
    print(line)
    if skipped.get("count"):
        reasons = skipped.get("reasons") or {}
        if reasons:
            print("  skipped: " + "; ".join(f"{why} ({n})" for why, n in reasons.items()))
        for e in (skipped.get("examples") or [])[:5]:
            print(f"    {e['where']}: {e['reason']}")
    unknown = Manifest(m).model.get("unknown_tokens") or {}
    if unknown.get("all"):
        print(f"  vocabulary: {unknown['all']} caption tokens ({unknown['extra']} in S_E) are outside the model's "
              f"compact vocabulary and read as one unknown token; see the README, 'Vocabulary'")


def next_step(m: dict, root: Path | None = None) -> str | None:
    """The command that moves the run on: the first stage not done, or the dashboard when all are."""
    name, stages = m["name"], m.get("stages") or {}
    where = f" --runs-root {root}" if root is not None and Path(root) != DEFAULT_ROOT else ""
    if m.get("status") == "failed":
        return "fix what the error says, then run the same command again (finished stages are kept)"
    if stages.get("train_f") != "done" or stages.get("train_g") != "done":
        return (f"multimem train --name {name}{where} with the data options of this run, or train elsewhere: "
                f"multimem export-split {name}{where} --format csv --out DIR")
    for stage in ("score", "evaluate", "index"):
        if stages.get(stage) != "done":
            return f"multimem {stage} {name}{where}"
    return f"the dashboard: MULTIMEM_RUNS={root or DEFAULT_ROOT} streamlit run app.py"


def print_comparison(m: dict) -> None:
    c = m.get("comparison") or {}
    if not c:
        return
    print(f"  compared with {c['parent']} (raw CMC_f − CMC_g; one shared range {c['shared_range']:.4f}):")
    for s, v in c["subsets"].items():
        if "relative_change" in v:
            rel = "" if v["relative_change"] is None else f" ({v['relative_change'] * 100:+.1f}%)"
            change = v.get("change")
            sure = ""
            if change:  # older runs have no interval
                iv = Interval.from_dict(change)
                sure = f"; change {iv.text(4)}" if iv.within_noise else f"; change {iv.text(4)}, beyond noise"
                sure += "" if iv.replicas > 1 else " (one replica: training noise not in the interval)"
            print(f"    mean on {s}: {v['parent_raw']:+.4f} -> {v['raw']:+.4f}{rel}{sure}")
        elif v.get("raw") is not None:
            print(f"    mean on {s} ({v['n']}): {v['parent_raw']:+.4f} -> {v['raw']:+.4f}")
    a, b = c["utility_f"]["parent"], c["utility_f"]["run"]
    if a and b:
        print(f"    f mean R@5: {a['mean_R@5']:.3f} -> {b['mean_R@5']:.3f}")
    cost = Manifest(m).mitigation.get("cost") or {}
    if cost.get("relative_to_parent_training") is not None:
        print(f"    cost: {cost['mitigation_seconds']:.0f} s against {cost['parent_training_seconds']:.0f} s "
              f"training the parent's f and g ({cost['relative_to_parent_training']:.2f}x)")
