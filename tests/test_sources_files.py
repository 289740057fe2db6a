import io
import json
import tarfile

import pytest
from PIL import Image

from multimem.data.images import open_image
from multimem.data.sources import (
    CocoSource,
    CsvSource,
    DataError,
    DataSource,
    WebDatasetSource,
    open_source,
)


def png_bytes(color=(255, 0, 0), fmt="PNG", size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def write_image(path, color=(255, 0, 0), fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(color, fmt))
    return path


def write_tar(path, members: dict[str, bytes | str]):
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            data = data.encode("utf-8") if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# ---------------------------------------------------------------- CSV


@pytest.fixture
def csv_dir(tmp_path):
    write_image(tmp_path / "img" / "a.png", (255, 0, 0))
    write_image(tmp_path / "img" / "b.jpg", (0, 255, 0), "JPEG")
    write_image(tmp_path / "img" / "c.png", (0, 0, 255))
    return tmp_path


def test_csv_groups_captions_and_skips(csv_dir):
    other = write_image(csv_dir.parent / (csv_dir.name + "_outside") / "d.png")
    (csv_dir / "data.csv").write_text(
        "filepath,title,cls\n"
        "img/a.png,a red square,red\n"         # line 2
        "img/b.jpg,a green square,green\n"     # line 3
        "img/a.png,  red   block ,red\n"       # line 4: second caption of a.png, whitespace collapsed
        "img/c.png,   ,blue\n"                 # line 5: empty caption
        "img/missing.png,nothing here,x\n"     # line 6: missing image
        f"{other},outside image,y\n"          # line 7: absolute path
        "img/c.png,NA,blue\n",                 # line 8: "NA" is a caption, not a missing value
        encoding="utf-8",
    )
    src = CsvSource(csv_dir / "data.csv", label_col="cls")
    pairs = src.pairs()
    assert [p.id for p in pairs] == ["img/a.png", "img/b.jpg", other.as_posix(), "img/c.png"]
    by_id = {p.id: p for p in pairs}
    assert by_id["img/a.png"].captions == ("a red square", "red block")
    assert by_id["img/a.png"].caption == "a red square"
    assert by_id["img/a.png"].label == "red"
    assert by_id["img/b.jpg"].captions == ("a green square",)
    assert by_id["img/c.png"].captions == ("NA",)
    assert by_id["img/a.png"].image_ref == str(csv_dir / "img" / "a.png")
    assert by_id["img/a.png"].meta == {"file": "img/a.png"}
    assert open_image(by_id["img/a.png"].image_ref).getpixel((0, 0)) == (255, 0, 0)
    assert open_image(by_id["img/b.jpg"].image_ref).size == (8, 6)

    assert [(s.where, s.reason) for s in src.skipped] == [
        (f"{csv_dir / 'data.csv'}:5", "empty caption in column 'title'"),
        (f"{csv_dir / 'data.csv'}:6", f"image file not found: {csv_dir / 'img' / 'missing.png'}"),
    ]


def test_tsv_custom_columns_and_id_col(csv_dir):
    (csv_dir / "data.tsv").write_text(
        "key\tpath\tcaption\n"
        "k1\timg/a.png\ta, red, square\n"
        "k2\timg/b.jpg\tgreen\n",
        encoding="utf-8",
    )
    src = CsvSource(csv_dir / "data.tsv", image_col="path", caption_col="caption", id_col="key")
    pairs = src.pairs()
    assert [(p.id, p.captions, p.label) for p in pairs] == [
        ("k1", ("a, red, square",), None),
        ("k2", ("green",), None),
    ]
    assert src.skipped == []


def test_csv_missing_column_message(csv_dir):
    path = csv_dir / "data.csv"
    path.write_text("filepath,caption\nimg/a.png,red\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        CsvSource(path).pairs()
    msg = str(err.value)
    assert str(path) in msg and "'title'" in msg and "'caption'" in msg and "--caption-col" in msg


def test_csv_wrong_separator_hint(csv_dir):
    path = csv_dir / "data.csv"
    path.write_text("filepath\ttitle\nimg/a.png\tred\n", encoding="utf-8")
    with pytest.raises(DataError, match="--sep"):
        CsvSource(path).pairs()


def test_csv_not_utf8(csv_dir):
    path = csv_dir / "data.csv"
    path.write_bytes("filepath,title\nimg/a.png,caf\u00e9 cr\u00e8me\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        CsvSource(path).pairs()
    assert str(path) in str(err.value) and "UTF-8" in str(err.value)


def test_csv_utf8_bom_and_blank_lines(csv_dir):
    path = csv_dir / "data.csv"
    path.write_bytes("\ufefffilepath,title\n\nimg/a.png,caf\u00e9\n\nimg/b.jpg,\n".encode("utf-8"))
    src = CsvSource(path)
    assert [(p.id, p.captions) for p in src.pairs()] == [("img/a.png", ("caf\u00e9",))]
    assert [s.where for s in src.skipped] == [f"{path}:5"]  # blank lines still count as lines


def test_csv_duplicate_ids(csv_dir):
    path = csv_dir / "data.csv"
    path.write_text("id,filepath,title\nx,img/a.png,red\nx,img/b.jpg,green\n", encoding="utf-8")
    with pytest.raises(DataError, match="duplicate sample id 'x'"):
        CsvSource(path, id_col="id").pairs()


def test_csv_file_not_found(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        CsvSource(tmp_path / "nope.csv").pairs()


# ---------------------------------------------------------------- webdataset


def test_wds_shard(tmp_path):
    shard = write_tar(tmp_path / "shard-000.tar", {
        "000001.jpg": png_bytes((255, 0, 0), "JPEG"),
        "000001.txt": "a red square\n\n  a scarlet   tile \n",
        "000001.cls": "7\n",
        "000002.png": png_bytes((0, 255, 0)),
        "000002.txt": "a green square",
        "000002.json": json.dumps({"label": "green", "width": 8}),
        "000003.png": png_bytes(),
        "000003.txt": "   \n",        # empty caption
        "000004.txt": "orphan caption",  # no image
        "000005.webp": png_bytes(),    # no caption file
        "sub/000006.png": png_bytes((0, 0, 255)),  # the key keeps the member's folder
        "sub/000006.txt": "blue",
    })
    src = WebDatasetSource(str(shard))
    pairs = src.pairs()
    assert [(p.id, p.captions, p.label) for p in pairs] == [
        ("000001", ("a red square", "a scarlet tile"), "7"),
        ("000002", ("a green square",), "green"),
        ("sub/000006", ("blue",), None),
    ]
    assert pairs[0].image_ref == f"{shard}#000001.jpg"
    assert pairs[2].image_ref == f"{shard}#sub/000006.png"
    assert open_image(pairs[1].image_ref).getpixel((0, 0)) == (0, 255, 0)
    assert open_image(pairs[2].image_ref).getpixel((0, 0)) == (0, 0, 255)
    assert [(s.where, s.reason) for s in src.skipped] == [
        (f"{shard}#000003", "no caption"),
        (f"{shard}#000004", "no image: expected key.jpg/key.png next to key.txt"),
        (f"{shard}#000005", "no caption"),
    ]


def test_wds_directory_braces_and_key_collisions(tmp_path):
    for i in range(3):
        write_tar(tmp_path / f"shards-{i:03d}.tar", {"a.png": png_bytes(), "a.txt": f"caption {i}"})
    by_dir = WebDatasetSource(tmp_path)
    by_braces = WebDatasetSource(str(tmp_path / "shards-{000..002}.tar"))
    by_list = WebDatasetSource([tmp_path / "shards-000.tar", str(tmp_path / "shards-{001..002}.tar")])
    for src in (by_dir, by_braces, by_list):
        assert [(p.id, p.caption) for p in src.pairs()] == [
            ("shards-000/a", "caption 0"),
            ("shards-001/a", "caption 1"),
            ("shards-002/a", "caption 2"),
        ]
    assert by_dir.spec() == by_braces.spec() == by_list.spec()


def test_wds_no_images(tmp_path):
    shard = write_tar(tmp_path / "captions.tar", {"a.txt": "one", "b.txt": "two"})
    with pytest.raises(DataError) as err:
        WebDatasetSource(shard).pairs()
    assert str(shard) in str(err.value) and "no images found" in str(err.value)


def test_wds_missing_shard_and_not_a_tar(tmp_path):
    with pytest.raises(DataError, match="shard not found"):
        WebDatasetSource(tmp_path / "nope-{0..1}.tar")
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar file at all" * 50)
    with pytest.raises(DataError, match="cannot read as a tar"):
        WebDatasetSource(bad).pairs()


# ---------------------------------------------------------------- COCO


def coco_json(path, images, annotations):
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations}), encoding="utf-8")
    return path


def test_coco(tmp_path):
    write_image(tmp_path / "train" / "000000000001.jpg", (255, 0, 0), "JPEG")
    write_image(tmp_path / "train" / "000000000002.jpg", (0, 255, 0), "JPEG")
    (tmp_path / "annotations").mkdir()
    ann = coco_json(
        tmp_path / "annotations" / "captions.json",
        [
            {"id": 1, "file_name": "000000000001.jpg"},
            {"id": 2, "file_name": "000000000002.jpg"},
            {"id": 3, "file_name": "000000000003.jpg"},  # file missing
            {"id": 4, "file_name": "000000000002.jpg"},  # no captions
        ],
        [{"id": 10 + k, "image_id": 1, "caption": f"red square {k} "} for k in range(5)]
        + [{"id": 20, "image_id": 2, "caption": "green\nsquare"},
           {"id": 21, "image_id": 2, "caption": "  "},
           {"id": 30, "image_id": 3, "caption": "lost"},
           {"id": 40, "image_id": 99, "caption": "unknown image"}],
    )
    src = CocoSource(ann, images_dir=tmp_path / "train")
    pairs = src.pairs()
    assert [p.id for p in pairs] == ["1", "2"]
    assert pairs[0].captions == tuple(f"red square {k}" for k in range(5))
    assert pairs[1].captions == ("green square",)
    assert pairs[0].label is None and pairs[0].meta == {"file": "000000000001.jpg"}
    assert pairs[0].image_ref == str(tmp_path / "train" / "000000000001.jpg")
    assert open_image(pairs[1].image_ref).size == (8, 6)
    assert [(s.where, s.reason) for s in src.skipped] == [
        (f"{ann}:annotations[8]", "image_id 99 is not in 'images'"),
        (f"{ann}:image 3", f"image file not found: {tmp_path / 'train' / '000000000003.jpg'}"),
        (f"{ann}:image 4", "no captions"),
    ]


def test_coco_images_dir_defaults_to_json_folder(tmp_path):
    write_image(tmp_path / "x.png")
    ann = coco_json(tmp_path / "c.json", [{"id": 5, "file_name": "x.png"}], [{"image_id": 5, "caption": "hi"}])
    src = CocoSource(ann)
    assert src.spec() == {"kind": "coco", "annotations": str(ann), "images_dir": str(tmp_path)}
    assert [(p.id, p.captions) for p in src.pairs()] == [("5", ("hi",))]


def test_coco_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [', encoding="utf-8")
    with pytest.raises(DataError, match="invalid JSON") as err:
        CocoSource(bad).pairs()
    assert str(bad) in str(err.value)

    no_ann = tmp_path / "no_ann.json"
    no_ann.write_text(json.dumps({"images": []}), encoding="utf-8")
    with pytest.raises(DataError, match="'annotations'") as err:
        CocoSource(no_ann).pairs()
    assert str(no_ann) in str(err.value)

    no_caption_key = coco_json(tmp_path / "k.json", [{"id": 1, "file_name": "x.png"}], [{"image_id": 1, "text": "x"}])
    with pytest.raises(DataError, match=r"annotations\[0\] has no key 'caption'"):
        CocoSource(no_caption_key).pairs()

    dup = coco_json(tmp_path / "d.json", [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}], [])
    with pytest.raises(DataError, match="repeats image id 1"):
        CocoSource(dup).pairs()


# ---------------------------------------------------------------- specs


def test_spec_round_trip(tmp_path, csv_dir, monkeypatch):  # csv_dir is tmp_path
    (csv_dir / "data.tsv").write_text("p\tc\tl\nimg/a.png\tred\tr\n", encoding="utf-8")
    shard = write_tar(tmp_path / "s.tar", {"k.png": png_bytes(), "k.txt": "cap"})
    write_image(tmp_path / "coco" / "1.png")
    ann = coco_json(tmp_path / "coco" / "c.json", [{"id": 1, "file_name": "1.png"}], [{"image_id": 1, "caption": "c"}])

    monkeypatch.chdir(tmp_path)  # relative paths in, absolute paths in the spec
    sources = [
        CsvSource("data.tsv", image_col="p", caption_col="c", label_col="l"),
        WebDatasetSource("s.tar"),
        CocoSource("coco/c.json"),
    ]
    for src in sources:
        spec = src.spec()
        spec = json.loads(json.dumps(spec))  # survives a JSON manifest
        again = open_source(spec)
        assert isinstance(again, DataSource) and type(again) is type(src)
        assert again.spec() == spec
        assert again.pairs() == src.pairs() and len(src.pairs()) == 1
    assert sources[0].spec() == {"kind": "csv", "path": str(csv_dir / "data.tsv"), "image_col": "p",
                                 "caption_col": "c", "sep": None, "label_col": "l", "id_col": None}
    assert sources[1].spec() == {"kind": "wds", "paths": [str(shard)]}
    assert sources[2].spec()["annotations"] == str(ann)


def test_open_source_unknown_kind():
    with pytest.raises(DataError) as err:
        open_source({"kind": "parquet", "path": "x"})
    for kind in ("csv", "wds", "coco", "twemoji"):
        assert kind in str(err.value)
    with pytest.raises(DataError, match="kind"):
        open_source({"path": "x"})
