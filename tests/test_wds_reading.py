"""webdataset shards read the same every time: decode threads and forked DataLoader workers never share a file
handle, .tar.gz reads like .tar, damaged shards stop with a named error, brace patterns and folders list shards."""
import io
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from multimem.data import images as imgs
from multimem.data.dataset import StreamedImages, batch_images, build, fingerprint, load_images
from multimem.data.sources.base import DataError
from multimem.data.sources.webdataset import WebDatasetSource
from multimem.data.splits import SplitSizes

SIZE = 32
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 4 workers on 2 cores


def png(rng: np.random.Generator, alpha: bool) -> bytes:
    """A PNG of realistic size (64-128 px, smooth gradient plus noise), RGBA with a varying alpha when asked."""
    w, h = (int(v) for v in rng.integers(64, 129, size=2))
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (w + h)], axis=-1)
    arr = np.clip(base + rng.integers(-40, 41, size=(h, w, 3)), 0, 255).astype(np.uint8)
    if alpha:
        arr = np.dstack([arr, (x * 255 // w).astype(np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA" if alpha else "RGB").save(buf, "PNG")
    return buf.getvalue()


def add(tf: tarfile.TarFile, name: str, data: bytes | str) -> None:
    data = data.encode() if isinstance(data, str) else data
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 1_700_000_000
    tf.addfile(info, io.BytesIO(data))


def write_shards(folder, n: int, n_shards: int, seed: int = 0, suffix: str = ".tar") -> dict[str, bytes]:
    """`n` samples (key.png + key.txt, every third with key.cls) over `n_shards` shards; returns {key: png bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out: dict[str, bytes] = {}
    per = -(-n // n_shards)
    for s in range(n_shards):
        mode = "w:gz" if suffix in (".tar.gz", ".tgz") else "w"
        with tarfile.open(folder / f"shard-{s:03d}{suffix}", mode) as tf:
            for i in range(s * per, min(n, (s + 1) * per)):
                key = f"{i:06d}"
                out[key] = png(rng, alpha=i % 4 == 0)
                add(tf, f"{key}.png", out[key])
                add(tf, f"{key}.txt", f"sample {key}\nanother caption of {key}\n")
                if i % 3 == 0:
                    add(tf, f"{key}.cls", str(i % 5))
    return out


def expected(pngs: dict[str, bytes], keys: list[str]) -> torch.Tensor:
    """The decoded tensors straight from the PNG bytes, without any tar reading."""
    return torch.stack([imgs.to_tensor(imgs.decode(pngs[k]), SIZE) for k in keys])


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wds")
    return folder, write_shards(folder, 300, 3)


# ---------------------------------------------------------------- (a) the same data every read


def test_in_memory_reads_are_identical_with_4_threads(shards):
    folder, pngs = shards
    want = None
    for _ in range(10):
        source = WebDatasetSource(folder)
        pairs = source.pairs()
        assert len(pairs) == 300
        images, ok = load_images(source, pairs, SIZE, workers=4)
        assert all(ok) and source.skipped == [], [s.reason for s in source.skipped[:3]]
        if want is None:
            want = expected(pngs, [p.id for p in pairs])
        assert torch.equal(images, want)


def test_build_fingerprints_are_identical_in_memory_and_streamed(shards):
    folder, pngs = shards
    prints = set()
    for stream in (False, True):
        for i in range(10):
            source = WebDatasetSource(folder)
            data = build(source, SplitSizes(candidate=20, extra=30), 0, 0.0, 0, SIZE, workers=4, stream=stream)
            assert source.skipped == [], [s.reason for s in source.skipped[:3]]
            assert len(data) == 300
            prints.add(fingerprint(data.pairs))
            if i == 0:
                assert torch.equal(data.images[torch.arange(300)], expected(pngs, data.ids))
    assert len(prints) == 1


def test_streamed_batches_through_4_dataloader_workers_are_identical(shards):
    folder, pngs = shards
    source = WebDatasetSource(folder)
    pairs = source.pairs()
    want = expected(pngs, [p.id for p in pairs])
    rows = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0))
    batches = [rows[i : i + 16] for i in range(0, len(rows), 16)]
    for _ in range(10):
        streamed = StreamedImages(WebDatasetSource(folder), [p.image_ref for p in pairs], SIZE)
        got = torch.zeros_like(want)
        for b, px in batch_images(streamed, batches, workers=4):
            got[b] = px
        assert torch.equal(got, want)


def test_plain_tar_pairs_and_fingerprint_are_those_of_the_previous_reader(shards):
    """Runs made before reading shards through webdataset keep their fingerprint (value from the old reader)."""
    folder, _ = shards
    pairs = WebDatasetSource(folder).pairs()
    assert fingerprint(pairs) == "1653421d58393a35"
    p = pairs[3]
    assert (p.id, p.captions, p.label) == ("000003", ("sample 000003", "another caption of 000003"), "3")
    assert p.image_ref == f"{folder / 'shard-000.tar'}#000003.png"
    assert p.meta == {"shard": "shard-000.tar", "member": "000003.png"}


# ---------------------------------------------------------------- (b) compressed shards


def test_tar_gz_and_tgz_read_like_tar(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMEM_CACHE", str(tmp_path / "cache"))
    pngs = write_shards(tmp_path / "tar", 40, 2, seed=1)
    write_shards(tmp_path / "gz", 40, 2, seed=1, suffix=".tar.gz")
    write_shards(tmp_path / "tgz", 40, 2, seed=1, suffix=".tgz")
    before = {p: p.read_bytes() for p in (tmp_path / "gz").iterdir()}
    plain = WebDatasetSource(tmp_path / "tar").pairs()

    def same(p):
        return [(q.id, imgs.shard_stem(imgs.split_shard_ref(q.image_ref)[0]), q.captions, q.label, q.meta["member"])
                for q in p]

    for suffix in ("gz", "tgz"):
        source = WebDatasetSource(tmp_path / suffix)
        pairs = source.pairs()
        assert same(pairs) == same(plain) and len(pairs) == 40
        assert all(imgs.is_shard_ref(p.image_ref) for p in pairs)
        # the fingerprint names the shard's file, so it differs from the .tar one by that name only
        renamed = [type(q)(q.id, q.image_ref.replace(f".{'tar.gz' if suffix == 'gz' else 'tgz'}#", ".tar#"),
                           q.captions, q.label, q.meta) for q in pairs]
        assert fingerprint(renamed) == fingerprint(plain)
        images, ok = load_images(source, pairs, SIZE, workers=4)
        assert all(ok) and source.skipped == []
        assert torch.equal(images, expected(pngs, [p.id for p in pairs]))
    # decompressed once per shard into the cache folder; the user's files are untouched
    assert len(list((tmp_path / "cache" / "shards").glob("*.tar"))) == 4
    assert before == {p: p.read_bytes() for p in (tmp_path / "gz").iterdir()}


def test_rewritten_tar_gz_gets_a_new_cached_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMEM_CACHE", str(tmp_path / "cache"))
    pngs = write_shards(tmp_path / "a", 6, 1, seed=1, suffix=".tar.gz")
    shard = tmp_path / "a" / "shard-000.tar.gz"
    ref = f"{shard}#000002.png"
    assert imgs.read_bytes(ref) == pngs["000002"]
    pngs = write_shards(tmp_path / "a", 6, 1, seed=2, suffix=".tar.gz")
    os.utime(shard, ns=(1, 1))  # a different mtime even on coarse clocks
    assert imgs.read_bytes(ref) == pngs["000002"]
    assert len(list((tmp_path / "cache" / "shards").glob("*.tar"))) == 1  # the stale copy is removed


def test_shard_refs():
    assert imgs.split_shard_ref("/d/s.tar#k/x.png") == ("/d/s.tar", "k/x.png")
    assert imgs.split_shard_ref("/d/s.tar.gz#x.png") == ("/d/s.tar.gz", "x.png")
    assert imgs.split_shard_ref("/d#1/s.tgz#x#2.png") == ("/d#1/s.tgz", "x#2.png")
    assert imgs.split_shard_ref("/d/img#1.png") is None and not imgs.is_shard_ref("/d/a.png")
    assert imgs.is_shard_ref("/d/s.tar#x.png")


# ---------------------------------------------------------------- (c) damaged shards


def test_truncated_shard_is_a_named_error_with_the_count(tmp_path):
    write_shards(tmp_path / "ok", 10, 1)
    raw = (tmp_path / "ok" / "shard-000.tar").read_bytes()
    with tarfile.open(tmp_path / "ok" / "shard-000.tar") as tf:
        members = tf.getmembers()
    fourth = next(m for m in members if m.name == "000004.png")  # 4 samples (000000-000003) come before it
    cases = {
        "mid-image": fourth.offset_data + fourth.size // 2,
        "at a member boundary": fourth.offset,  # every tar reader takes this for a shorter, complete archive
    }
    for what, cut in cases.items():
        shard = tmp_path / what.replace(" ", "-") / "shard-000.tar"
        shard.parent.mkdir()
        shard.write_bytes(raw[:cut])
        with pytest.raises(DataError) as err:
            WebDatasetSource(shard.parent).pairs()
        msg = str(err.value)
        assert str(shard) in msg and "4 samples were read from it before the damage" in msg, (what, msg)
        assert "re-create the shard" in msg
    garbled = bytearray(raw)
    garbled[fourth.offset : fourth.offset + 100] = b"x" * 100
    shard = tmp_path / "garbled.tar"
    shard.write_bytes(bytes(garbled))
    with pytest.raises(DataError, match="4 samples were read from it before the damage"):
        WebDatasetSource(shard).pairs()


def test_truncated_tar_gz_is_a_named_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMEM_CACHE", str(tmp_path / "cache"))
    write_shards(tmp_path, 10, 1, suffix=".tar.gz")
    shard = tmp_path / "shard-000.tar.gz"
    data = shard.read_bytes()
    for cut in (len(data) // 2, len(data) - 4):  # in the middle, and only the gzip trailer lost
        shard.write_bytes(data[:cut])
        with pytest.raises(DataError) as err:
            WebDatasetSource(shard).pairs()
        assert str(shard) in str(err.value) and "samples were read from it before the damage" in str(err.value)
    assert not list((tmp_path / "cache").rglob("*.tar"))  # no half-written copy is left


def test_shard_damaged_after_listing_stops_decoding(tmp_path):
    write_shards(tmp_path, 10, 1)
    shard = tmp_path / "shard-000.tar"
    source = WebDatasetSource(shard)
    pairs = source.pairs()
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(DataError, match="shard-000.tar: the shard is truncated or corrupt"):
        load_images(source, pairs, SIZE, workers=4)


# ---------------------------------------------------------------- (d) brace patterns and folders


def test_brace_patterns_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMEM_CACHE", str(tmp_path / "cache"))
    write_shards(tmp_path / "mixed", 30, 3)
    os.rename(tmp_path / "mixed" / "shard-001.tar", tmp_path / "shard-001.tar")
    tgz = tmp_path / "mixed" / "shard-001.tgz"
    with tarfile.open(tmp_path / "shard-001.tar") as src, tarfile.open(tgz, "w:gz") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
    (tmp_path / "mixed" / "notes.txt").write_text("not a shard")
    by_folder = WebDatasetSource(tmp_path / "mixed")
    assert [p.name for p in by_folder.paths] == ["shard-000.tar", "shard-001.tgz", "shard-002.tar"]
    ids = [p.id for p in by_folder.pairs()]
    assert ids == [f"{i:06d}" for i in range(30)]
    by_braces = WebDatasetSource(str(tmp_path / "mixed" / "shard-{000,002}.tar"))
    assert [p.name for p in by_braces.paths] == ["shard-000.tar", "shard-002.tar"]
    both = WebDatasetSource([str(tmp_path / "mixed" / "shard-{000..000}.tar"), tmp_path / "mixed" / "shard-001.tgz"])
    assert [p.id for p in both.pairs()] == ids[:20]
    with pytest.raises(DataError, match="shard not found"):
        WebDatasetSource(str(tmp_path / "mixed" / "shard-{000..003}.tar"))
    with pytest.raises(DataError, match="must be a .tar, .tar.gz or .tgz"):
        WebDatasetSource(tmp_path / "mixed" / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .tar, .tar.gz or .tgz shards in this folder"):
        WebDatasetSource(tmp_path / "empty")


# ---------------------------------------------------------------- (e) the CLI, one command at a time


@pytest.mark.parametrize("stream", [False, True])
def test_cli_stages_as_separate_commands_on_one_webdataset_run(tmp_path, stream):
    """Every command reads the shards again; each read must give the run's fingerprint or the run is refused."""
    from multimem.cli import main
    from multimem.store.runs import Run

    write_shards(tmp_path / "wds", 200, 4)
    root = str(tmp_path / "runs")
    assert main(["train", "--fast", "--name", "r", "--source", "wds", "--path", str(tmp_path / "wds"),
                 "--runs-root", root, "--epochs", "1", "--candidate", "20", "--extra", "30", "--inject", "0"]
                + ["--stream"] * stream) == 0
    for stage in ("score", "evaluate", "index"):
        assert main([stage, "r", "--runs-root", root]) == 0, stage
    m = Run(tmp_path / "runs", "r").manifest()
    assert m["status"] == "complete"
    assert m["dataset"]["skipped"]["count"] == 0 and m["dataset"]["n_injected"] == 0
    assert m["dataset"]["n_samples"] == 200


def test_gzip_data_named_tar_still_reads(tmp_path, monkeypatch):
    """tarfile read a gzipped file named .tar before; it still does, through the decompressed copy."""
    monkeypatch.setenv("MULTIMEM_CACHE", str(tmp_path / "cache"))
    pngs = write_shards(tmp_path, 6, 1, suffix=".tar.gz")
    os.rename(tmp_path / "shard-000.tar.gz", tmp_path / "shard-000.tar")
    source = WebDatasetSource(tmp_path)
    pairs = source.pairs()
    images, ok = load_images(source, pairs, SIZE, workers=2)
    assert all(ok) and torch.equal(images, expected(pngs, [p.id for p in pairs]))
