"""OFA writer: FORMATS.md's worked example byte for byte, the TSV rows, parse and its round trip."""

from __future__ import annotations

import base64

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding_convert.errors import RecordError
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.synth.images import jpeg_bytes, write_jpeg
from grounding_convert.writers.ofa import QUANTIZER, OfaWriter

CAR = [100.0, 50.0, 300.0, 390.0]
CAR_TOKENS = "<bin_156> <bin_104> <bin_468> <bin_812>"


def car_sample(**image) -> Sample:
    return Sample(
        id="refcoco/unc/ref7/sent0",
        dataset="refcoco",
        split="train",
        image=ImageRef(file="train2014/COCO_1.jpg", id="1", width=640, height=480, **image),
        text="the red car",
        regions=[Region("the red car", (0, 11), [CAR])],
    )


def caption_sample() -> Sample:
    text = "A man drives the red car."
    return Sample(
        id="flickr30k_entities/1/0",
        dataset="flickr30k_entities",
        split="train",
        image=ImageRef(file="1.jpg", width=640, height=480),
        text=text,
        regions=[
            Region("A man", (0, 5), [[0.0, 0.0, 64.0, 48.0]]),
            Region("the red car", (13, 24), [CAR]),
            Region("nothing", None, []),
        ],
    )


def test_rec_record_is_the_worked_example_byte_for_byte():
    [record] = OfaWriter().render(car_sample(), "rec", seed=0)
    assert record == {
        "id": "refcoco/unc/ref7/sent0/rec/0",
        "sample_id": "refcoco/unc/ref7/sent0",
        "task": "rec",
        "image": "train2014/COCO_1.jpg",
        "width": 640,
        "height": 480,
        "uniq_id": "refcoco/unc/ref7/sent0/rec/0",
        "image_id": "1",
        "text": "the red car",
        "region_coord": "100.00,50.00,300.00,390.00",
        "source": ' which region does the text " the red car " describe?',
        "target": CAR_TOKENS,
    }


def test_reg_record_puts_the_tokens_in_the_source_and_the_phrase_in_the_target():
    [record] = OfaWriter().render(car_sample(), "reg", seed=3)
    # unify_dataset.py L339-342: two leading spaces, nothing after the colon but the tokens; ' ' + pre_caption
    assert record["source"] == "  what does the region describe? region: " + CAR_TOKENS
    assert record["target"] == " the red car"
    assert OfaWriter().parse(record)[0].phrase == "the red car"


def test_grounded_caption_puts_tokens_after_each_grounded_phrase():
    writer = OfaWriter()
    [record] = writer.render(caption_sample(), "grounded-caption", seed=0)
    assert record["source"] == " what does the image describe?"
    assert record["target"] == (" a man <bin_0> <bin_0> <bin_100> <bin_100> drives the red car " + CAR_TOKENS + ".")
    assert record["text"] == "A man drives the red car."  # the TSV text column stays raw
    assert record["region_coord"] == ""
    decoded = writer.parse(record)
    assert [d.phrase for d in decoded] == [None, None]
    assert [len(d.boxes) for d in decoded] == [1, 1]


def test_chinese_prompt_is_ofa_cn_wording():
    [record] = OfaWriter.from_mapping({"language": "zh"}).render(car_sample(), "rec", seed=0)
    assert record["source"] == '这段文字" the red car "描述的是哪个区域？'


def test_chinese_caption_prompt_is_upstream():
    """caption_dataset.py L119 (BertBPE): "图片描述了什么内容?" with an ASCII question mark."""
    [record] = OfaWriter.from_mapping({"language": "zh"}).render(caption_sample(), "grounded-caption", seed=0)
    assert record["source"] == "图片描述了什么内容?"


def test_source_and_target_text_is_pre_caption_normalized():
    """data/ofa_dataset.py pre_caption: lower case, leading punctuation off, '-' and '/' to spaces."""
    sample = car_sample()
    sample.text = "..Several Climbers/rock-face"
    sample.regions = [Region(sample.text, (0, len(sample.text)), [CAR])]
    writer = OfaWriter()
    [rec] = writer.render(sample, "rec", seed=0)
    assert rec["source"] == ' which region does the text " several climbers rock face " describe?'
    assert rec["text"] == "..Several Climbers/rock-face"
    [reg] = writer.render(sample, "reg", seed=0)
    assert reg["target"] == " several climbers rock face"
    sample.regions[0].phrase = "-- /"
    with pytest.raises(RecordError, match="empty after pre_caption"):
        writer.render(sample, "rec", seed=0)


def test_float32_half_to_even_bins_as_ofa_computes_them():
    """CONFORMANCE.md O4: v=311/666 is exactly 466.5 (OFA 467), v=905/1810 is 499.5 (OFA 499)."""
    assert QUANTIZER.encode(311, 666) == 467 and round(311 / 666 * 999) == 466
    assert QUANTIZER.encode(905, 1810) == 499 and round(905 / 1810 * 999) == 500
    assert QUANTIZER.encode_box(CAR, 640, 480) == [156, 104, 468, 812]


def test_records_fit_the_writer_schema():
    writer = OfaWriter()
    records = [r for task in writer.tasks for r in writer.render(caption_sample(), task, seed=1)]
    table = pa.Table.from_pylist(records, schema=writer.schema())
    assert table.num_rows == 2 + 2 + 1
    assert table.column_names[:6] == ["id", "sample_id", "task", "image", "width", "height"]


# --- several boxes for one phrase ---------------------------------------------------------------------

TWO_DOGS = [[10.0, 20.0, 110.0, 220.0], [320.0, 240.0, 640.0, 480.0]]


def dogs_sample() -> Sample:
    return Sample(
        id="vg/1/2",
        dataset="visual_genome",
        split=None,
        image=ImageRef(file="1.jpg", width=640, height=480),
        text="two dogs",
        regions=[Region("two dogs", (0, 8), [list(b) for b in TWO_DOGS])],
    )


def test_multi_box_rec_spells_every_box_and_parses_back():
    writer = OfaWriter()
    [record] = writer.render(dogs_sample(), "rec", seed=0)
    assert record["target"] == ("<bin_16> <bin_42> <bin_172> <bin_458> <bin_500> <bin_500> <bin_999> <bin_999>")
    assert record["region_coord"] == "10.00,20.00,640.00,480.00"  # the union: OFA's loader reads one box
    [decoded] = writer.parse(record)
    assert len(decoded.boxes) == 2
    step_x, step_y = writer.tolerance(640, 480)
    for got, want in zip(decoded.boxes, TWO_DOGS, strict=True):
        assert all(abs(g - w) <= max(step_x, step_y) / 2 for g, w in zip(got, want, strict=True))


def test_multi_box_union_option_spells_one_merged_box():
    writer = OfaWriter.from_mapping({"multi-box": "union"})
    [record] = writer.render(dogs_sample(), "rec", seed=0)
    assert record["target"] == "<bin_16> <bin_42> <bin_999> <bin_999>"
    [decoded] = writer.parse(record)
    assert len(decoded.boxes) == 1


# --- round trip property ------------------------------------------------------------------------------


@st.composite
def image_and_box(draw):
    width, height = draw(st.integers(1, 5000)), draw(st.integers(1, 5000))
    xs = sorted(draw(st.lists(st.floats(0, 1), min_size=2, max_size=2, unique=True)))
    ys = sorted(draw(st.lists(st.floats(0, 1), min_size=2, max_size=2, unique=True)))
    return width, height, [xs[0] * width, ys[0] * height, xs[1] * width, ys[1] * height]


@settings(max_examples=300, deadline=None)
@given(image_and_box())
def test_render_then_parse_is_within_one_step(case):
    width, height, box = case
    writer = OfaWriter()
    sample = Sample(
        id="s",
        dataset="grit",
        split=None,
        image=ImageRef(file="a.jpg", width=width, height=height),
        text="thing",
        regions=[Region("thing", (0, 5), [box])],
    )
    q = QUANTIZER.encode_box(box, width, height)
    if box[2] <= box[0] or box[3] <= box[1] or q[0] >= q[2] or q[1] >= q[3]:
        with pytest.raises(RecordError):
            writer.render(sample, "rec", seed=0)
        return
    for task in ("rec", "reg", "grounded-caption"):
        [record] = writer.render(sample, task, seed=0)
        spelled = record["target"] if task != "reg" else record["source"]
        values = [int(t[5:-1]) for t in spelled.split() if t.startswith("<bin_")]
        assert len(values) == 4 and all(0 <= v <= 999 for v in values)
        [decoded] = writer.parse(record)
        step_x, step_y = writer.tolerance(width, height)
        for i, (got, want) in enumerate(zip(decoded.boxes[0], box, strict=True)):
            assert abs(got - want) <= (step_x if i % 2 == 0 else step_y) + 1e-9


# --- bad records --------------------------------------------------------------------------------------


def rec_record(target: str, **extra) -> dict:
    return {
        "id": "r",
        "task": "rec",
        "width": 640,
        "height": 480,
        "text": "x",
        "source": "",
        "target": target,
    } | extra


@pytest.mark.parametrize(
    "target",
    [
        "<bin_156> <bin_104> <bin_468> <bin_1000>",  # out of range
        "<bin_156> <bin_104> <bin_468>",  # not a whole box
        "<bin_156> <bin_104> <bin_468> <bin_8x2>",  # malformed token
        "<bin_156> <bin_104> <bin_468> <bin_812",  # unterminated token
        "<bin_156> <bin_104> car <bin_468> <bin_812>",  # words inside the box
        "",  # no box at all
    ],
)
def test_parse_rejects_malformed_tokens(target):
    with pytest.raises(RecordError) as err:
        OfaWriter().parse(rec_record(target))
    assert err.value.reason == "bad-box"


def test_parse_rejects_missing_fields_and_sizes():
    with pytest.raises(RecordError) as err:
        OfaWriter().parse(rec_record(CAR_TOKENS, width=0))
    assert err.value.reason == "bad-size"
    record = rec_record(CAR_TOKENS)
    del record["target"]
    with pytest.raises(RecordError) as err:
        OfaWriter().parse(record)
    assert err.value.reason == "missing-key"


def test_a_box_too_thin_for_the_bins_is_rejected_not_collapsed():
    sample = car_sample()
    sample.image.width = 5000
    sample.regions[0].boxes = [[1000.0, 50.0, 1001.0, 390.0]]
    with pytest.raises(RecordError) as err:
        OfaWriter().render(sample, "rec", seed=0)
    assert err.value.reason == "empty-box"


def test_text_holding_a_location_token_is_refused():
    sample = car_sample()
    sample.regions[0].phrase = "the <bin_3> car"
    with pytest.raises(RecordError) as err:
        OfaWriter().render(sample, "rec", seed=0)
    assert err.value.reason == "render-failed"


# --- TSV ----------------------------------------------------------------------------------------------


def test_tsv_row_without_images_keeps_the_path():
    writer = OfaWriter()
    sample = car_sample()
    sample.regions[0].phrase = "the red\tcar"
    [record] = writer.render(sample, "rec", seed=0)
    assert writer.tsv_columns == ("uniq_id", "image_id", "text", "region_coord", "image")
    assert writer.tsv_row(record) == [
        "refcoco/unc/ref7/sent0/rec/0",
        "1",
        "the red car",  # OFA splits on tabs: a tab in the text becomes a space
        "100.00,50.00,300.00,390.00",
        "train2014/COCO_1.jpg",
    ]


def test_tsv_row_embeds_the_image_as_base64(tmp_path):
    write_jpeg(tmp_path / "train2014" / "COCO_1.jpg", 64, 48, [[8, 4, 24, 40]])
    writer = OfaWriter.from_mapping({"embed-images": "true", "image-root": str(tmp_path)})
    [record] = writer.render(car_sample(), "rec", seed=0)
    row = writer.tsv_row(record)
    assert row[:4] == ["refcoco/unc/ref7/sent0/rec/0", "1", "the red car", "100.00,50.00,300.00,390.00"]
    assert base64.b64decode(row[4]) == jpeg_bytes(64, 48, [[8, 4, 24, 40]])
    assert base64.urlsafe_b64decode(row[4]) == base64.b64decode(row[4])  # what OFA's loader calls
    assert "\t" not in "".join(row) and "\n" not in "".join(row)


def test_tsv_row_with_a_missing_image_is_a_record_error(tmp_path):
    writer = OfaWriter.from_mapping({"embed-images": "true", "image-root": str(tmp_path)})
    [record] = writer.render(car_sample(), "rec", seed=0)
    with pytest.raises(RecordError) as err:
        writer.tsv_row(record)
    assert err.value.reason == "missing-image"
    assert "COCO_1.jpg" in err.value.message
