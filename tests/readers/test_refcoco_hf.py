"""The ``refcoco-hf`` reader on hand-made rows of both Hub mirrors, written as the Hub's Parquet files."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grounding_convert.errors import Note, Reject
from grounding_convert.plugins import detect_reader
from grounding_convert.readers.refcoco_hf import RefCocoHfReader
from grounding_convert.schema import Sample
from grounding_convert.synth import generate
from grounding_convert.synth.images import jpeg_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "refcoco_hf"


def hub_folder(tmp_path: Path, rows_file: str) -> Path:
    root = tmp_path / "refcoco"
    (root / "data").mkdir(parents=True)
    for split, rows in json.loads((FIXTURES / rows_file).read_text()).items():
        for row in rows:
            if "size" in row:
                width, height = row.pop("size")
                row["image"] = {"bytes": jpeg_bytes(width, height), "path": None}
        pq.write_table(pa.Table.from_pylist(rows), root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def read_all(path: Path, **options) -> list:
    reader = RefCocoHfReader.from_mapping(options)
    return [item for p in reader.plan(str(path)) for item in reader.read(p)]


def test_jxu124_rows(tmp_path):
    root = hub_folder(tmp_path, "jxu124_rows.json")
    assert detect_reader(str(root)) == "refcoco-hf"
    items = read_all(root)
    found = {s.id: s for s in items if isinstance(s, Sample)}
    assert sorted(found) == ["refcoco/unc/0/0", "refcoco/unc/0/1", "refcoco/unc/7/5"]  # the refer reader's ids
    lady = found["refcoco/unc/0/0"]
    assert (lady.text, lady.split, lady.image.file) == (
        "the lady with the blue shirt",
        "train",
        "train2014/COCO_train2014_000000581857.jpg",
    )
    assert (lady.image.width, lady.image.height) == (427, 640)
    assert lady.regions[0].boxes == [[103.93, 299.99, 238.15, 477.41]]
    assert found["refcoco/unc/7/5"].split == "testA"  # Hub "test" without a split column
    assert found["refcoco/unc/7/5"].meta["hf_split"] == "test"
    (reject,) = [i for i in items if isinstance(i, Reject)]
    assert reject.reason == "bad-box" and "raw_anns.bbox" in reject.message  # row's bbox is not xyxy of raw_anns


def test_lmms_rows_and_extract_images(tmp_path):
    root = hub_folder(tmp_path, "lmms_rows.json")
    dest = tmp_path / "images"
    dest.mkdir()
    items = read_all(root, extract_images=str(dest))
    found = [s for s in items if isinstance(s, Sample)]
    assert [(s.id, s.text, s.split) for s in found] == [
        ("refcoco/lmms-lab/testA/0/0", "man in red", "testA"),
        ("refcoco/lmms-lab/testA/0/1", "guy on left", "testA"),
        ("refcoco/lmms-lab/testA/1/0", "woman", "testA"),
    ]
    assert found[0].regions[0].boxes == [[10.0, 20.0, 40.0, 48.0]]  # xywh → xyxy, clipped to 64x48
    assert all(s.meta["evaluation_only"] is True for s in found)
    assert sum(isinstance(i, Note) and i.what == "clipped-box" for i in items) == 2
    (reject,) = [i for i in items if isinstance(i, Reject)]
    assert reject.reason == "unsafe-path" and "escape.jpg" in reject.message
    assert sorted(p.name for p in dest.iterdir()) == ["COCO_train2014_000000000073.jpg"]  # written once
    assert not (tmp_path / "escape.jpg").exists()
    again = read_all(root, extract_images=str(dest))  # same bytes already there: fine
    assert Counter(i.reason for i in again if isinstance(i, Reject)) == {"unsafe-path": 1}


def test_extract_never_overwrites_nor_follows_symlinks(tmp_path):
    root = hub_folder(tmp_path, "lmms_rows.json")
    dest = tmp_path / "images"
    dest.mkdir()
    (dest / "COCO_train2014_000000000073.jpg").write_bytes(b"someone else's file")
    items = read_all(root, extract_images=str(dest))
    assert Counter(i.reason for i in items if isinstance(i, Reject)) == {"unsafe-path": 3}
    assert (dest / "COCO_train2014_000000000073.jpg").read_bytes() == b"someone else's file"
    planted = tmp_path / "planted"
    planted.mkdir()
    other = tmp_path / "outside"
    other.mkdir()
    os.symlink(other, planted / "sub")
    rows = [
        {
            "question_id": "9",
            "image": {"bytes": jpeg_bytes(8, 8), "path": None},
            "answer": ["a"],
            "bbox": [1.0, 1.0, 2.0, 2.0],
            "file_name": "sub/x.jpg",
        }
    ]
    lonely = tmp_path / "lonely" / "data"
    lonely.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), lonely / "val-00000-of-00001.parquet")
    items = read_all(lonely.parent, extract_images=str(planted))
    assert [i.reason for i in items if isinstance(i, Reject)] == ["unsafe-path"]
    assert not list(other.iterdir())


@pytest.mark.parametrize("variant", ["jxu124", "lmms-lab"])
def test_synthetic_counts(tmp_path, variant):
    counts = generate("refcoco-hf", tmp_path, images=10, seed=4, variant=variant)
    items = read_all(tmp_path)
    assert sum(isinstance(i, Sample) for i in items) == counts["samples"]
    assert not [i for i in items if isinstance(i, Reject)]
