"""The ``coco`` reader on a hand-checked COCO/LVIS excerpt, an Objects365-shaped synthetic file, and bad input."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.errors import Filtered, InputFileError, Note, Reject
from grounding_convert.plugins import detect_reader
from grounding_convert.readers import coco_index
from grounding_convert.readers.coco import CocoReader
from grounding_convert.schema import Sample
from grounding_convert.synth import generate

FIXTURES = Path(__file__).parent / "fixtures" / "coco"


def read_all(path: Path, **options) -> list:
    reader = CocoReader.from_mapping(options)
    return [item for p in reader.plan(str(path)) for item in reader.read(p)]


def samples(items: list) -> list[Sample]:
    return [i for i in items if isinstance(i, Sample)]


def test_hand_checked_excerpt():
    items = read_all(FIXTURES / "instances_val2017.json")
    (sample,) = samples(items)
    assert sample.id == "coco/397133" and sample.split == "val2017" and sample.dataset == "coco"
    assert (sample.image.file, sample.image.width, sample.image.height) == ("000000397133.jpg", 640, 427)
    assert sample.text == "person . dog ."
    person, dog = sample.regions
    assert (person.phrase, person.span, person.category) == ("person", (0, 6), "person")
    assert person.boxes == [[100.0, 50.0, 300.0, 350.0], [10.0, 10.0, 30.0, 30.0]]  # ann ids 10, 11; crowd 13 dropped
    assert (dog.phrase, dog.span, dog.boxes) == ("dog", (9, 12), [[600.0, 400.0, 640.0, 427.0]])  # clipped
    rejects = Counter(i.reason for i in items if isinstance(i, Reject))
    assert rejects == {"empty-box": 1, "unknown-reference": 2}  # zero width; category 99; image_id 999999
    assert Counter(i.reason for i in items if isinstance(i, Filtered)) == {"no-annotations": 2}
    assert Counter(i.what for i in items if isinstance(i, Note)) == {"crowd-box-dropped": 1, "clipped-box": 1}


def test_crowd_keep_flags_the_box():
    (sample,) = samples(read_all(FIXTURES / "instances_val2017.json", crowd="keep"))
    assert sample.regions[0].boxes[2] == [0.0, 0.0, 50.0, 50.0]
    assert sample.meta["crowd_boxes"] == "0:2"


def test_lvis_names_synonyms_and_coco_url():
    (sample,) = samples(read_all(FIXTURES / "lvis_v1_val.json"))
    assert sample.id == "lvis/397133" and sample.image.file == "val2017/000000397133.jpg"
    assert sample.image.url == "http://images.cocodataset.org/val2017/000000397133.jpg"
    assert [r.phrase for r in sample.regions] == ["aerosol can", "bow (weapon)"]
    assert [r.category for r in sample.regions] == ["aerosol_can", "bow_(weapon)"]
    assert sample.meta["neg_category_ids"] == "5,7" and sample.meta["not_exhaustive_category_ids"] == "3"
    (synonym,) = samples(read_all(FIXTURES / "lvis_v1_val.json", phrase="synonym"))
    assert synonym.regions[0].phrase in ("aerosol can", "spray can")
    assert synonym.text == f"{synonym.regions[0].phrase} . bow (weapon) ."


def test_order_of_annotations_does_not_matter(tmp_path):
    data = json.loads((FIXTURES / "instances_val2017.json").read_text())
    for seed in range(3):
        random.Random(seed).shuffle(data["annotations"])
        path = tmp_path / f"instances_val2017_{seed}.json"
        path.write_text(json.dumps(data))
        assert [s.to_record() for s in samples(read_all(path))] == [
            s.to_record() for s in samples(read_all(FIXTURES / "instances_val2017.json"))
        ]


def test_synthetic_objects365_shape_counts_and_partitions(tmp_path):
    counts = generate("coco", tmp_path, images=40, seed=3, write_images=False, annotations_per_image=5)
    path = tmp_path / "annotations" / "instances_train2017.json"
    small = read_all(path, images_per_partition=7)
    whole = read_all(path, images_per_partition=1000)
    assert len(samples(small)) == counts["samples"]
    assert sum(len(s.regions) for s in samples(small)) == counts["regions"]
    assert sum(isinstance(i, Note) and i.what == "crowd-box-dropped" for i in small) == counts["crowd"]
    assert [s.to_record() for s in samples(small)] == [s.to_record() for s in samples(whole)]
    assert len(CocoReader.from_mapping({"images_per_partition": 7}).plan(str(path))) == 6


def test_spill_is_reused_and_rebuilt_when_the_file_changes(tmp_path):
    path = tmp_path / "instances_val2017.json"
    shutil.copy(FIXTURES / "instances_val2017.json", path)
    reader = CocoReader.from_mapping({"cache_dir": str(tmp_path / "cache")})
    first = reader.plan(str(path))
    folder = Path(first[0].params["spill"])
    assert folder.parent == tmp_path / "cache" and (folder / "index.json").is_file()
    assert reader.plan(str(path)) == first  # same partitions: --resume accepts them
    path.write_text(path.read_text() + "\n")
    assert reader.plan(str(path))[0].params["spill"] != str(folder)
    coco_index.remove(folder)
    assert not folder.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b'{"images": [], "annotations": [', "is not valid JSON"),
        (b'{"images": [{"id": 1}], "categories": []}', "has no 'annotations' list"),
        (b"[1, 2]", "is not a JSON object"),
        (b'{"images": [], "annotations": [], "categories": [{"id": 1, "bbox": NaN}]}', "is not valid JSON"),
    ],
)
def test_whole_file_problems(tmp_path, content, problem):
    path = tmp_path / "instances_train2017.json"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=problem) as caught:
        CocoReader().plan(str(path))
    assert str(path) in str(caught.value)


def test_detect_tells_coco_from_mdetr_and_others(tmp_path):
    assert detect_reader(str(FIXTURES / "instances_val2017.json")) == "coco"
    assert detect_reader(str(FIXTURES / "lvis_v1_val.json")) == "coco"
    mdetr = Path(__file__).parent / "fixtures" / "mdetr" / "final_flickr_separateGT_val.json"
    assert not CocoReader.detect(str(mdetr))


def test_cli_convert_and_inspect(tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    source = str(FIXTURES / "instances_val2017.json")
    result = runner.invoke(app, ["convert", "--to", "qwen-vl", "-i", source, "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["read"] == 6 and counts["written"] == 1 and counts["rejected"] == 3 and counts["filtered"] == 2
    assert runner.invoke(app, ["validate", str(out), "--source", source]).exit_code == 0
    shown = runner.invoke(app, ["inspect", source])
    assert shown.exit_code == 0 and "samples   1" in shown.output and "crowd-box-dropped: 1" in shown.output


def test_subprocess_bad_file_exits_2(tmp_path):
    path = tmp_path / "instances_train2017.json"
    path.write_bytes(b'{"images": [], "annotations": [{"id": 1')
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("grounding-convert")),
            "convert",
            "--to",
            "qwen-vl",
            "--from",
            "coco",
            "-i",
            str(path),
            "-o",
            str(tmp_path / "out"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert f"error: {path}: is not valid JSON" in run.stderr and "Traceback" not in run.stderr
