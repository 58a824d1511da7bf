"""The ``odvg`` reader on FORMATS_NEXT §7's worked examples and hand-made lines in all three modes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from grounding_convert.errors import InputFileError, Note, Reject
from grounding_convert.plugins import detect_reader
from grounding_convert.readers.odvg import OdvgReader
from grounding_convert.schema import Sample
from grounding_convert.synth import generate

FIXTURES = Path(__file__).parent / "fixtures" / "odvg"
CAR = [100.0, 50.0, 300.0, 390.0]


def read_all(path: Path, **options) -> list:
    reader = OdvgReader.from_mapping(options)
    return [item for p in reader.plan(str(path)) for item in reader.read(p)]


def test_detection_with_label_map():
    items = read_all(FIXTURES / "od.jsonl")
    first, second = [i for i in items if isinstance(i, Sample)]
    assert (first.id, first.text, first.image.file) == ("odvg/od/1", "car .", "x.jpg")
    assert first.regions[0].boxes == [CAR] and first.regions[0].span == (0, 3)
    assert second.text == "car . person ."  # label 1 has no category: label_map.json names it
    assert second.regions[0].boxes == [[600.0, 400.0, 640.0, 480.0]]  # clipped
    assert second.regions[1].boxes == [[10.0, 10.0, 50.0, 50.0], [20.0, 20.0, 60.0, 70.0]]
    reasons = Counter(i.reason for i in items if isinstance(i, Reject))
    assert reasons == {"empty-box": 1, "bad-record": 1}  # line 3 x2 < x1; line 4 not JSON
    assert [i.position for i in items if isinstance(i, Reject)] == ["line 3", "line 4"]
    assert sum(i.count for i in items if isinstance(i, Note) and i.what == "clipped-box") == 1


def test_grounding_worked_example_and_phrase_lookup():
    exact, looked_up = [i for i in read_all(FIXTURES / "vg.jsonl") if isinstance(i, Sample)]
    assert exact.text == "A man stands next to the red car."
    (region,) = exact.regions
    assert (region.phrase, region.span, region.boxes) == ("the red car", (21, 32), [CAR])
    man, car = looked_up.regions  # no tokens_positive: phrases found in the caption; box list kept
    assert (man.phrase, man.span, len(man.boxes)) == ("A man", (0, 5), 2)
    assert (car.span, car.boxes) == ((21, 32), [CAR])


def test_referring_one_sample_per_sentence():
    found = [i for i in read_all(FIXTURES / "ref.jsonl") if isinstance(i, Sample)]
    assert [(s.id, s.text) for s in found] == [
        ("odvg/ref/1/0/0", "the red car"),
        ("odvg/ref/1/0/1", "car on the right"),
    ]
    assert all(s.regions[0].boxes == [CAR] and s.regions[0].span == (0, len(s.text)) for s in found)


def test_detect_and_bad_label_map(tmp_path):
    assert detect_reader(str(FIXTURES / "vg.jsonl")) == "odvg"
    (tmp_path / "od.jsonl").write_bytes((FIXTURES / "od.jsonl").read_bytes())
    (tmp_path / "label_map.json").write_text("[1, 2")
    with pytest.raises(InputFileError, match="label_map.json"):
        OdvgReader().plan(str(tmp_path / "od.jsonl"))


@pytest.mark.parametrize("mode", ["detection", "grounding", "referring"])
def test_synthetic_counts_and_partitions(tmp_path, mode):
    counts = generate("odvg", tmp_path, images=30, seed=2, mode=mode, write_images=False)
    path = next(tmp_path.glob("*.jsonl"))
    many = read_all(path, lines_per_partition=1)
    one = read_all(path)
    found = [i for i in many if isinstance(i, Sample)]
    assert len(found) == counts["samples"] and sum(len(s.regions) for s in found) == counts["regions"]
    assert [s.to_record() for s in found] == [i.to_record() for i in one if isinstance(i, Sample)]
    assert len(OdvgReader.from_mapping({"lines_per_partition": 1}).plan(str(path))) > 5
