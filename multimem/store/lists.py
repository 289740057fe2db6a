"""Curation lists: named, ordered lists of sample ids kept in the run folder, and their exports.

    RUN/lists/NAME.json    {"name", "run", "ids": [...], "created", "updated"}

Names follow the run-name rule (letters, digits, '.', '_', '-'); ids are kept in the order they were tagged,
without repeats, and must be samples of the run. Every write takes the list's lock and replaces the file
atomically, so two sessions tagging at once never lose an id and a reader never sees half a file; lists survive
restarts. In review mode (multimem.review) every write refuses.

A list is also a removal ranking: `multimem mitigate --from RUN --strategy removal --ranking ids --ids FILE` reads
FILE with `read_ids` (one id per line, a CSV or Parquet file with an `id` column, or a list file of this module).
"""
from __future__ import annotations

import fcntl
import io
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pandas as pd

from multimem.store.atomic import atomic_write_json
from multimem.store.review_mode import refuse_if_readonly
from multimem.store.runs import Run, RunError, now

FOLDER = "lists"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# what an export holds besides every score column: ids, captions and image references
EXPORT_FIRST = ["id", "subset", "caption", "captions", "label", "image_ref", "injected", "original_caption"]


class ListError(RunError):
    pass


def check_list_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise ListError(f"invalid list name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                        "letter or digit")
    return name


def list_path(root: Path | str, run: str, name: str) -> Path:
    return Run(root, run).files.list(check_list_name(name))


def list_names(root: Path | str, run: str) -> list[str]:
    folder = Run(root, run).files.lists
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if NAME_RE.fullmatch(p.stem) and ".." not in p.stem)


def read_list(root: Path | str, run: str, name: str) -> list[str]:
    """The list's ids in order; [] for a list that does not exist yet."""
    path = list_path(root, run, name)
    if not path.is_file():
        return []
    return _ids_of(path)


def _ids_of(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ListError(f"{path}: cannot read the list ({exc})") from None
    ids = data.get("ids") if isinstance(data, dict) else None
    if not isinstance(ids, list):
        raise ListError(f"{path}: not a list file (expected a JSON object with 'ids')")
    return [str(i) for i in ids]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.stem}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _known_ids(root: Path | str, run: str) -> set[str]:
    r = Run(root, run)
    if not r.files.samples.is_file():
        raise ListError(f"run {run!r} has no samples table yet")
    return set(pd.read_parquet(r.files.samples, columns=["id"])["id"].astype(str))


def _write(root: Path | str, run: str, name: str, change) -> list[str]:
    refuse_if_readonly("change a list")
    path = list_path(root, run, name)
    with _locked(path):
        old = _ids_of(path) if path.is_file() else []
        created = json.loads(path.read_text(encoding="utf-8")).get("created") if path.is_file() else now()
        ids = change(old)
        atomic_write_json(path, {"name": name, "run": run, "ids": ids, "created": created, "updated": now()})
    return ids


def add_to_list(root: Path | str, run: str, name: str, ids: Iterable[str]) -> list[str]:
    """Tag samples: append `ids` (samples of the run) to list NAME of the run, creating it; returns the list.

    The one call for tagging from any page (Browse cards, the Sample page)."""
    refuse_if_readonly("change a list")
    ids = [str(i) for i in ids]
    known = _known_ids(root, run)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ListError(f"{unknown[0]!r} is not a sample of run {run!r}")
    return _write(root, run, name, lambda old: list(dict.fromkeys([*old, *ids])))


def remove_from_list(root: Path | str, run: str, name: str, ids: Iterable[str]) -> list[str]:
    gone = {str(i) for i in ids}
    return _write(root, run, name, lambda old: [i for i in old if i not in gone])


def delete_list(root: Path | str, run: str, name: str) -> None:
    refuse_if_readonly("delete a list")
    path = list_path(root, run, name)
    with _locked(path):
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ exports

def export_table(scores: pd.DataFrame, ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the scores table (all of them, or `ids` in their order): ids, captions (all of them, joined with
    ' | '), image references and every score column. Nothing is dropped but the internal row number."""
    table = scores if ids is None else scores.set_index("id", drop=False).reindex(
        [i for i in ids if i in set(scores["id"])])
    table = table.reset_index(drop=True)
    if "captions" in table.columns:
        table = table.assign(captions=table["captions"].map(
            lambda cs: " | ".join(str(c) for c in cs) if cs is not None else ""))
    first = [c for c in EXPORT_FIRST if c in table.columns]
    rest = [c for c in table.columns if c not in first and c != "row"]
    return table[first + rest]


def to_csv_bytes(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode("utf-8")


def to_parquet_bytes(table: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ id files

def read_ids(path: Path | str) -> list[str]:
    """Sample ids from a file, in order, repeats dropped: one id per line (.txt or anything else), a CSV/TSV or
    Parquet file with an `id` column, or a list file of this module (.json)."""
    path = Path(path)
    if not path.is_file():
        raise ListError(f"{path}: ids file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            ids = _ids_of(path)
        elif suffix in (".csv", ".tsv", ".parquet", ".pq"):
            table = (pd.read_parquet(path) if suffix in (".parquet", ".pq") else
                     pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False))
            if "id" not in table.columns:
                raise ListError(f"{path}: no 'id' column; the columns are {list(table.columns)}")
            ids = [str(i).strip() for i in table["id"]]
        else:
            ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError) as exc:
        if isinstance(exc, ListError):
            raise
        raise ListError(f"{path}: cannot read ids ({exc})") from None
    ids = list(dict.fromkeys(i for i in ids if i))
    if not ids:
        raise ListError(f"{path}: no ids in the file")
    return ids


def removal_options(root: Path | str, run: str, name: str) -> dict:
    """`multimem mitigate --strategy removal` options that remove list NAME of the run (its order is the ranking):
    ranking ids, the list file, n = its length, and the pool that holds every id (train when it has S_S pairs).
    Raises ListError when the list is empty or holds pairs f did not train on (S_I, S_E)."""
    ids = read_list(root, run, name)
    if not ids:
        raise ListError(f"list {name!r} is empty; tag pairs first")
    samples = pd.read_parquet(Run(root, run).files.samples, columns=["id", "subset"])
    subset = dict(zip(samples["id"].astype(str), samples["subset"]))
    untrained = [i for i in ids if subset.get(i) not in ("candidate", "shared")]
    if untrained:
        raise ListError(f"list {name!r} holds {len(untrained)} pair(s) f never trained on (S_I or S_E, e.g. "
                        f"{untrained[0]!r}); only S_C and S_S pairs can be removed: take them off the list")
    pool = "train" if any(subset[i] == "shared" for i in ids) else "candidate"
    return {"ranking": "ids", "ids": str(list_path(root, run, name).resolve()), "n": len(ids), "pool": pool}
