"""Training f and g at scale with open_clip_train, and scoring what it produces.

`export_split` writes the training lists of f (S_S ∪ S_C) and g (S_S ∪ S_I) in the formats open_clip_train reads
(CSV with filepath/title columns, or webdataset shards), the model config as an open_clip `local-dir:` folder, and
COMMANDS.md with the exact torchrun and SLURM commands. `import_checkpoints` puts the two resulting checkpoints into
the run, after checking that they fit the architecture, so that `multimem score` continues as for any run.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pandas as pd

from multimem.data import images
from multimem.model import factory
from multimem.store import staging
from multimem.store.atomic import atomic_path, atomic_write_json, atomic_write_text
from multimem.store.runs import Run, RunError
from multimem.data.sources.base import DataError
from multimem.data.splits import TRAIN_F, TRAIN_G
from multimem.model.tokenizer import FULL_VOCAB
from multimem.store.manifest import Manifest

FORMATS = ("csv", "wds")


def model_dir(run: Run, out: Path) -> Path:
    """The run's architecture as an open_clip `local-dir:` folder, with open_clip's full BPE vocabulary.

    open_clip_train tokenizes with open_clip's own tokenizer, so the exported config has vocab_size 49408 even when
    the project's CPU config uses a compact vocabulary.
    """
    m = run.manifest()
    info = Manifest(m)
    name = info.config.get("model") or info.model.get("name")
    cfg = factory.model_config(name)
    cfg["text_cfg"]["vocab_size"] = FULL_VOCAB
    mean, std, size = factory.image_norm_from_config(name)
    folder = out / "model"
    atomic_write_json(folder / "open_clip_config.json", {
        "model_cfg": cfg,
        "preprocess_cfg": {"mean": mean, "std": std, "size": size, "interpolation": "bicubic", "resize_mode": "shortest"},
    })
    return folder


def _image_file(ref: str, out: Path, key: str) -> str:
    """A plain file path for an image reference; members of tar shards are written out once."""
    shard_member = images.split_shard_ref(ref)
    if shard_member is not None:
        target = out / "images" / f"{key}{Path(shard_member[1]).suffix or '.png'}"
        if not target.exists():
            with atomic_path(target) as tmp:
                tmp.write_bytes(images.read_bytes(ref))
        return str(target.resolve())
    return str(Path(ref).resolve())


def training_list(samples: pd.DataFrame, subsets: tuple[str, ...], out: Path, all_captions: bool) -> pd.DataFrame:
    """One row per (image, caption): every caption of a sample, or only its first."""
    rows = []
    for s in samples[samples["subset"].isin(subsets)].itertuples():
        path = _image_file(s.image_ref, out, f"{s.Index:08d}")
        for caption in (list(s.captions) if all_captions else [s.caption]):
            rows.append({"filepath": path, "title": caption, "id": s.id})
    return pd.DataFrame(rows)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _write_shards(df: pd.DataFrame, folder: Path, per_shard: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, len(df), per_shard):
        path = folder / f"shard-{start // per_shard:05d}.tar"
        with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
            for i, r in enumerate(df.iloc[start : start + per_shard].itertuples()):
                key = f"{start + i:09d}"
                for ext, data in ((Path(r.filepath).suffix.lower() or ".png", Path(r.filepath).read_bytes()),
                                  (".txt", r.title.encode("utf-8"))):
                    info = tarfile.TarInfo(key + ext)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        shards.append(path)
    return shards


def export_split(run: Run, fmt: str, out: Path, all_captions: bool = True, per_shard: int = 1000) -> dict:
    """Write f's and g's training lists, the model folder and COMMANDS.md; returns what was written."""
    if fmt not in FORMATS:
        raise DataError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    samples = run.samples() if run.files.samples.exists() else None
    if samples is None:
        raise RunError(f"run {run.name!r} has no split yet; create it with `multimem split` or `multimem train`")
    out = Path(out).resolve()
    m = run.manifest()
    train = Manifest(m).config.get("train", {})
    written: dict[str, object] = {"model": str(model_dir(run, out))}
    data_args = {}
    for tag, subsets in (("f", TRAIN_F), ("g", TRAIN_G)):
        df = training_list(samples, subsets, out, all_captions)
        if fmt == "csv":
            _write_csv(df, out / f"{tag}_train.csv")
            data_args[tag] = (f"--train-data {out / f'{tag}_train.csv'} --dataset-type csv "
                              "--csv-img-key filepath --csv-caption-key title --csv-separator ,")
            written[tag] = str(out / f"{tag}_train.csv")
        else:
            shards = _write_shards(df, out / f"{tag}_shards", per_shard)
            pattern = out / f"{tag}_shards" / f"shard-{{00000..{len(shards) - 1:05d}}}.tar"
            data_args[tag] = f"--train-data '{pattern}' --dataset-type webdataset --train-num-samples {len(df)}"
            written[tag] = [str(s) for s in shards]
        written[f"{tag}_pairs"] = len(df)
    atomic_write_text(out / "COMMANDS.md", commands(run.name, out, data_args, train))
    written["commands"] = str(out / "COMMANDS.md")
    run.update(export={"format": fmt, "folder": str(out), "all_captions": all_captions})
    return written


def commands(name: str, out: Path, data_args: dict[str, str], train: dict) -> str:
    epochs, batch, lr, seed = train.get("epochs", 30), train.get("batch_size", 128), train.get("lr", 2e-3), train.get("seed", 0)
    common = (f"--model local-dir:{out / 'model'} --batch-size {batch} --epochs {epochs} --lr {lr} --wd "
              f"{train.get('weight_decay', 0.1)} --warmup 100 --seed {seed} --workers 8 --save-frequency 1 "
              f"--logs {out / 'logs'} --report-to ''")
    text = [f"# Training f and g for run `{name}` with open_clip_train\n",
            "f trains on S_S ∪ S_C, g on S_S ∪ S_I, with the same architecture, hyper-parameters and seed.",
            "The model is this project's config as an open_clip `local-dir:` folder (`model/open_clip_config.json`,",
            "open_clip's full tokenizer vocabulary). Both trainings write `logs/NAME/checkpoints/epoch_N.pt`.\n",
            "## One node, N GPUs (torchrun)\n", "```bash"]
    for tag in ("f", "g"):
        text.append(f"torchrun --nproc_per_node 8 -m open_clip_train.main {data_args[tag]} {common} --name {tag}")
    text += ["```\n", "## SLURM (4 nodes × 8 GPUs)\n", "```bash"]
    for tag in ("f", "g"):
        text.append(f"srun --nodes 4 --ntasks-per-node 8 --gpus-per-task 1 --cpus-per-task 8 "
                    f"python -u -m open_clip_train.main {data_args[tag]} {common} --name {tag}")
    text += ["```\n", "## CPU, one process (a smoke test)\n", "```bash"]
    for tag in ("f", "g"):
        text.append(f"python -m open_clip_train.main {data_args[tag]} {common.replace('--workers 8', '--workers 0')} "
                    f"--device cpu --name {tag}")
    text += ["```\n", "## Then score the two checkpoints\n", "```bash",
             f"multimem score {name} --model local-dir:{out / 'model'} \\",
             f"    --f-checkpoint {out / 'logs/f/checkpoints'}/epoch_{epochs}.pt \\",
             f"    --g-checkpoint {out / 'logs/g/checkpoints'}/epoch_{epochs}.pt",
             "multimem evaluate " + name + " && multimem index " + name, "```", ""]
    return "\n".join(text)


def checked_token_map(path: Path, model_name: str) -> list[int] | None:
    """The checkpoint's token map (None: open_clip's full vocabulary), after checking that the checkpoint fits the
    architecture and that its text embedding covers every id the map gives."""
    model, tokenizer = factory.load_model(Path(path), model_name)  # a wrong architecture fails here, file named
    vocab = factory.vocab_size(model_name)
    token_map = tokenizer.token_map
    if token_map is None and vocab < FULL_VOCAB:
        raise DataError(f"checkpoint {path}: model {model_name!r} has a compact vocabulary of {vocab} tokens but the "
                        "checkpoint has no token_map to map open_clip's tokens into it; pass a checkpoint saved by "
                        "multimem, or one trained with open_clip's full vocabulary (export-split's model folder)")
    if token_map is not None and len(token_map) > vocab:
        raise DataError(f"checkpoint {path}: its token_map has {len(token_map)} ids but model {model_name!r} has "
                        f"{vocab} text embeddings; pass the model name the checkpoint was trained with")
    del model
    return token_map


def import_checkpoints(run: Run, model_name: str, f_path: Path, g_path: Path, config: dict | None = None) -> Run:
    """Check externally trained f and g and stage a copy of the run that holds them (multimem.staging).

    Nothing of `run` changes here: the caller scores the staged copy and swaps it in (staging.swap_in) only when
    that succeeded. Checkpoints that carry a token_map (multimem's own) are used with it. `config`: the run's
    settings to score with (default: the run's own, with `model_name`).
    """
    maps = {tag: checked_token_map(Path(path), model_name) for tag, path in (("f", f_path), ("g", g_path))}
    if maps["f"] != maps["g"]:
        raise DataError(f"checkpoints {f_path} and {g_path} use different text vocabularies (token_map); f and g "
                        "must tokenize the captions the same way: pass two checkpoints of one run or export")
    m = run.manifest()
    external = {tag: str(Path(p).resolve()) for tag, p in (("f", f_path), ("g", g_path))}
    external["stat"] = {tag: [Path(p).stat().st_size, Path(p).stat().st_mtime] for tag, p in (("f", f_path), ("g", g_path))}
    manifest = {
        **{k: v for k, v in m.items() if k not in ("utility", "summary", "index", "metric", "progress", "error")},
        "config": {**(config or m.get("config") or {}), "model": model_name},
        "model": {"name": model_name, "config": factory.model_config(model_name), "token_map": maps["f"],
                  "external": external},
        "stages": {"train_f": "done", "train_g": "done"},
    }
    files = {f"checkpoints/{tag}.pt": Path(p) for tag, p in (("f", f_path), ("g", g_path))}
    return staging.stage(run, manifest, files)
