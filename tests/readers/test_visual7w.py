"""Visual7W reader: the transcribed telling record, pointing candidates, size sources, bad input, synth."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from grounding_convert.errors import Filtered, InputFileError, Note, Reject, UsageError
from grounding_convert.readers.visual7w import Visual7wReader
from grounding_convert.schema import Region, Sample
from grounding_convert.synth import generate
from grounding_convert.synth.images import write_jpeg


def read_all(reader: Visual7wReader, path: Path) -> list:
    return [item for part in reader.plan(str(path)) for item in reader.read(part)]


def samples(items: list) -> list[Sample]:
    return [x for x in items if isinstance(x, Sample)]


@pytest.fixture()
def telling_dir(tmp_path: Path, shared_data: Path) -> Path:
    """The transcribed record written as a native dataset_v7w_telling.json + grounding file + image."""
    excerpt = json.loads((shared_data / "visual7w" / "excerpt_telling_transcribed.json").read_text())
    native = {"images": excerpt["images"]}
    (tmp_path / "dataset_v7w_telling.json").write_text(json.dumps(native))
    grounding = tmp_path / "dataset_v7w_grounding_annotations"
    grounding.mkdir()
    boxes = [
        {"qa_id": 871917, "name": "flooring", "x": 10, "y": 250, "width": 300, "height": 120, "box_id": 7},
        {"qa_id": 999999, "name": "wall", "x": 0, "y": 0, "width": 50, "height": 50, "box_id": 8},
    ]
    (grounding / "v7w_telling_answers.json").write_text(json.dumps({"boxes": boxes}))
    write_jpeg(tmp_path / "images" / "v7w_2323054.jpg", 500, 400)
    return tmp_path


def test_transcribed_telling_record(telling_dir: Path) -> None:
    reader = Visual7wReader.from_mapping({"image_root": str(telling_dir / "images")})
    assert Visual7wReader.detect(str(telling_dir))
    items = read_all(reader, telling_dir)
    assert items == samples(items)
    (sample,) = items
    assert sample.id == "visual7w/871917"
    assert (sample.dataset, sample.split) == ("visual7w", "train")
    assert sample.text == "What type of flooring?"
    assert sample.answer == "Wood."
    assert sample.regions == [Region(phrase="flooring", span=(13, 21), boxes=[[10.0, 250.0, 310.0, 370.0]])]
    assert sample.text[13:21] == "flooring"
    assert (sample.image.file, sample.image.id, sample.image.width, sample.image.height) == (
        "v7w_2323054.jpg",
        "2323054",
        500,
        400,
    )
    assert sample.meta == {
        "subset": "telling",
        "qa_id": 871917,
        "type": "what",
        "multiple_choices": '["Tile.","Carpet.","Cement."]',
    }


def test_size_from_visual_genome_image_data_and_grounding_beside(telling_dir: Path) -> None:
    grounding = telling_dir / "dataset_v7w_grounding_annotations" / "v7w_telling_answers.json"
    grounding.rename(telling_dir / "v7w_telling_answers.json")
    vg = [{"image_id": 1, "width": 10, "height": 10}, {"image_id": 2323054, "width": 800, "height": 600}]
    (telling_dir / "image_data.json").write_text(json.dumps(vg))
    reader = Visual7wReader.from_mapping({"vg_image_data": str(telling_dir / "image_data.json")})
    (sample,) = samples(read_all(reader, telling_dir))
    assert (sample.image.width, sample.image.height) == (800, 600)
    assert sample.regions[0].boxes == [[10.0, 250.0, 310.0, 370.0]]


def test_missing_size_options_is_a_clear_usage_error(telling_dir: Path) -> None:
    with pytest.raises(UsageError, match="--image-root") as info:
        Visual7wReader().plan(str(telling_dir))
    assert "--vg-image-data" in str(info.value)


def test_missing_and_broken_images_are_rejected(telling_dir: Path) -> None:
    reader = Visual7wReader.from_mapping({"image_root": str(telling_dir)})  # wrong folder: no v7w_*.jpg
    (reject,) = read_all(reader, telling_dir)
    assert isinstance(reject, Reject) and reject.reason == "missing-image"
    assert "qa_id 871917" in reject.message and "dataset_v7w_telling.json" in reject.message
    (telling_dir / "images" / "v7w_2323054.jpg").write_bytes(b"not a jpeg")
    reader = Visual7wReader.from_mapping({"image_root": str(telling_dir / "images")})
    (reject,) = read_all(reader, telling_dir)
    assert reject.reason == "bad-size"


def test_split_filter_and_truncated_file(telling_dir: Path) -> None:
    reader = Visual7wReader.from_mapping({"image_root": str(telling_dir / "images"), "split": "val"})
    (item,) = read_all(reader, telling_dir)
    assert isinstance(item, Filtered) and item.reason == "split"
    path = telling_dir / "dataset_v7w_telling.json"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(InputFileError, match="dataset_v7w_telling.json"):
        Visual7wReader.from_mapping({"image_root": str(telling_dir / "images")}).plan(str(telling_dir))


def pointing_dir(root: Path, box_11_x: int = -4, extra_qa: list | None = None) -> Path:
    qa = {
        "qa_id": 4242,
        "question": "Which object is used for cutting?",
        "answer": 11,
        "multiple_choices": [12, 13, 14],
        "type": "which",
    }
    images = [{"image_id": 77, "filename": "v7w_77.jpg", "split": "val", "qa_pairs": [qa, *(extra_qa or [])]}]
    boxes = [
        {"box_id": 11, "name": "knife", "x": box_11_x, "y": 5, "width": 20, "height": 10},
        {"box_id": 12, "name": "fork", "x": 30, "y": 5, "width": 10, "height": 40},
        {"box_id": 13, "name": "plate", "x": 0, "y": 50, "width": 60, "height": 30},
        {"box_id": 14, "name": "cup", "x": 70, "y": 10, "width": 25, "height": 25},
        {"box_id": 15, "name": "empty", "x": 100, "y": 10, "width": 0, "height": 25},
    ]
    (root / "dataset_v7w_pointing.json").write_text(json.dumps({"images": images, "boxes": boxes}))
    write_jpeg(root / "v7w_77.jpg", 100, 90)
    return root


def test_pointing_four_candidates_with_roles(tmp_path: Path) -> None:
    root = pointing_dir(tmp_path)
    reader = Visual7wReader.from_mapping({"image_root": str(root), "mode": "pointing"})
    items = read_all(reader, root)
    sample = items[0]
    source = str(root / "dataset_v7w_pointing.json")
    assert items[1:] == [Note("clipped-box", 1, {"sample_id": "visual7w/4242", "source": source})]
    assert sample.id == "visual7w/4242" and sample.answer == "knife" and sample.split == "val"
    assert sample.image.id == "77"  # pointing QAs have no image_id: the parent's is used
    expected = {
        11: Region("knife", None, [[0.0, 5.0, 16.0, 15.0]], role="answer"),
        12: Region("fork", None, [[30.0, 5.0, 40.0, 45.0]], role="choice"),
        13: Region("plate", None, [[0.0, 50.0, 60.0, 80.0]], role="choice"),
        14: Region("cup", None, [[70.0, 10.0, 95.0, 35.0]], role="choice"),
    }
    order = [11, 12, 13, 14]
    random.Random(4242).shuffle(order)
    assert sample.regions == [expected[i] for i in order]
    assert sample.meta["candidate_box_ids"] == json.dumps(order, separators=(",", ":"))
    assert sample.meta["answer_box_id"] == 11 and sample.meta["type"] == "which"
    assert samples(read_all(reader, root)) == [sample]  # deterministic


def test_pointing_bad_candidates_are_rejected(tmp_path: Path) -> None:
    extra = [
        {"qa_id": 1, "question": "Which?", "answer": 99, "multiple_choices": [12, 13, 14], "type": "which"},
        {"qa_id": 2, "question": "Which?", "answer": 15, "multiple_choices": [12, 13, 14], "type": "which"},
        {"qa_id": 3, "question": "Which?", "answer": 11, "type": "which"},
    ]
    root = pointing_dir(tmp_path, box_11_x=200, extra_qa=extra)
    reader = Visual7wReader.from_mapping({"image_root": str(root)})
    reasons = [x.reason for x in read_all(reader, root) if isinstance(x, Reject)]
    assert reasons == ["empty-box", "unknown-reference", "empty-box", "missing-key"]


@pytest.mark.parametrize("size_source", ["image_root", "vg_image_data"])
def test_synth_counts_match(tmp_path: Path, size_source: str) -> None:
    counts = generate("visual7w", tmp_path, images=1150, seed=7)
    assert counts["qas"] >= 10_000
    option = str(tmp_path / "images") if size_source == "image_root" else str(tmp_path / "image_data.json")
    reader = Visual7wReader.from_mapping({size_source: option, "qa_per_partition": 2500})
    partitions = reader.plan(str(tmp_path))
    assert len(partitions) >= 4 and sum(p.params["qas"] for p in partitions) == counts["qas"]
    items = read_all(reader, tmp_path)
    got = samples(items)
    assert len(got) == len(items) - sum(isinstance(x, Note) for x in items)
    kinds = Counter(s.meta["subset"] for s in got)
    assert kinds == {"telling": counts["telling_qas"], "pointing": counts["pointing_qas"]}
    assert len({s.id for s in got}) == counts["samples"]
    assert sum(len(s.regions) for s in got) == counts["regions"]
    assert sum(len(r.boxes) for s in got for r in s.regions) == counts["boxes"]
    assert sum(x.count for x in items if isinstance(x, Note) and x.what == "clipped-box") == counts["clipped"]
    pointing = [s for s in got if s.meta["subset"] == "pointing"]
    first = sum(s.regions[0].role == "answer" for s in pointing) / len(pointing)
    assert 0.15 < first < 0.35  # the answer is not always first
    assert all(sum(r.role == "answer" for r in s.regions) == 1 for s in pointing)
    assert all(s.text[r.span[0] : r.span[1]] == r.phrase for s in got for r in s.regions if r.span)


def test_detect(tmp_path: Path) -> None:
    assert not Visual7wReader.detect(str(tmp_path))
    root = pointing_dir(tmp_path)
    assert Visual7wReader.detect(str(root))
    assert Visual7wReader.detect(str(root / "dataset_v7w_pointing.json"))
