"""The detection task of Florence-2 (``<OD>``) and PaliGemma (``detect a ; b``): every grounded region under its
category (else its phrase), on the worked example of FORMATS_NEXT.md §5/§6; parsed back; validated on Flickr."""

from __future__ import annotations

import pytest

from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.plugins import get_writer
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.tools.validate import validate

CAR = [100.0, 50.0, 300.0, 390.0]


def scene() -> Sample:
    return Sample(
        id="x/0",
        dataset="d",
        split="train",
        image=ImageRef(file="x.jpg", width=640, height=480),
        text="A man stands next to the red car.",
        regions=[
            Region("the red car", (21, 32), [list(CAR)], category="car"),
            Region("A man", (0, 5), [[400.0, 60.0, 500.0, 200.0]]),
            Region("a parked car", None, [[0.0, 0.0, 640.0, 480.0]], category="car"),
        ],
    )


def test_florence2_od():
    writer = get_writer("florence-2").from_mapping({})
    (record,) = writer.render(scene(), "detection", 0)
    assert record["id"] == "x/0/detection"
    assert record["prefix"] == "<OD>"
    assert record["suffix"] == (
        "car<loc_156><loc_104><loc_468><loc_812>A man<loc_625><loc_125><loc_781><loc_416>"
        "car<loc_0><loc_0><loc_999><loc_999>"
    )
    assert [(d.phrase, len(d.boxes)) for d in writer.parse(record)] == [("car", 1), ("A man", 1), ("car", 1)]
    assert writer.parse(record)[0].boxes == [[100.16, 50.16, 299.84, 390.0]]


def test_paligemma_detect():
    writer = get_writer("paligemma").from_mapping({})
    (record,) = writer.render(scene(), "detection", 0)
    assert record["prefix"] == "detect car ; A man"
    assert record["suffix"] == (
        "<loc0107><loc0160><loc0831><loc0480> car ; <loc0128><loc0639><loc0426><loc0799> A man ; "
        "<loc0000><loc0000><loc1023><loc1023> car"
    )
    assert [(d.phrase, len(d.boxes)) for d in writer.parse(record)] == [("car", 1), ("A man", 1), ("car", 1)]


@pytest.mark.parametrize("name", ["florence-2", "paligemma"])
def test_detection_is_asked_for_and_renders_per_record(name):
    writer_cls = get_writer(name)
    assert "detection" in writer_cls.tasks and "detection" not in writer_cls.default_tasks
    writer = writer_cls.from_mapping({})
    assert not writer.batch_ready(("rec", "detection"))  # the columnar path would drop the detection records
    assert writer.batch_ready(("rec", "grounded-caption"))


@pytest.mark.parametrize("name", ["florence-2", "paligemma"])
def test_validate_source_on_flickr(flickr_excerpt, tmp_path, name):
    job = make_job(
        input=str(flickr_excerpt),
        output=str(tmp_path / "out"),
        writer=name,
        reader="flickr30k-entities",
        format="jsonl",
        tasks=("detection", "rec"),
    )
    result = convert(job, RunOptions(progress=False))
    assert result.tally.rejected == 0
    records = result.tally.records["test"]
    assert set(records) == {"detection", "rec"} and records["detection"] > 0
    report = validate(str(tmp_path / "out"), str(flickr_excerpt), "flickr30k-entities", {})
    assert report.ok, report.messages
    assert report.records == sum(records.values())
    assert report.worst_steps <= 1.0 + 1e-9
