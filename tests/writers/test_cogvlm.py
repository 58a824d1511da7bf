"""CogVLM writer: the [[x1,y1,x2,y2]] spelling byte for byte, conversations, pointing, parse round trip."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding_convert.errors import RecordError
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.templates import Templates
from grounding_convert.writers.cogvlm import QUANTIZER, CogVlmWriter, spell

CAR = [100.0, 50.0, 300.0, 390.0]

ONE_TEMPLATE_EACH = """
rec: {en: ["Where is {phrase}?"]}
reg: {en: ["What is in the region {boxes}?"]}
grounded-caption:
  en:
    - "Can you provide a description of the image and include the coordinates [[x0,y0,x1,y1]] for each
      mentioned object?"
pointing: {en: ["{question} Candidates: {boxes}."]}
"""


@pytest.fixture
def fixed(tmp_path) -> CogVlmWriter:
    """A writer with one phrasing per task, so whole records can be compared byte for byte."""
    path = tmp_path / "cogvlm.yaml"
    path.write_text(ONE_TEMPLATE_EACH, encoding="utf-8")
    return CogVlmWriter.from_mapping({"template-file": str(path)})


def car_sample() -> Sample:
    return Sample(
        id="refcoco/unc/ref7/sent0",
        dataset="refcoco",
        split="train",
        image=ImageRef(file="train2014/COCO_1.jpg", id="1", width=640, height=480),
        text="the red car",
        regions=[Region("the red car", (0, 11), [CAR])],
    )


def test_worked_example_box_spelling():
    assert spell([CAR], 640, 480) == "[[156,104,468,812]]"  # FORMATS.md: 468.75 -> 468, 812.5 -> 812


def test_rec_record_byte_for_byte(fixed):
    [record] = fixed.render(car_sample(), "rec", seed=0)
    assert record == {
        "id": "refcoco/unc/ref7/sent0/rec/0",
        "sample_id": "refcoco/unc/ref7/sent0",
        "task": "rec",
        "image": "train2014/COCO_1.jpg",
        "width": 640,
        "height": 480,
        "conversations": [
            {"role": "user", "content": "Where is the red car?"},
            {"role": "assistant", "content": "[[156,104,468,812]]"},
        ],
    }
    [decoded] = fixed.parse(record)
    assert decoded.phrase == "the red car"


def test_reg_record_asks_about_the_box(fixed):
    [record] = fixed.render(car_sample(), "reg", seed=0)
    assert record["conversations"] == [
        {"role": "user", "content": "What is in the region [[156,104,468,812]]?"},
        {"role": "assistant", "content": "the red car"},
    ]
    assert fixed.parse(record)[0].phrase == "the red car"


def test_grounded_caption_and_multi_box_phrase(fixed):
    sample = Sample(
        id="flickr30k_entities/1/0",
        dataset="flickr30k_entities",
        split="train",
        image=ImageRef(file="1.jpg", width=640, height=480),
        text="Two dogs chase the red car.",
        regions=[
            Region("Two dogs", (0, 8), [[10.0, 20.0, 110.0, 220.0], [320.0, 240.0, 640.0, 480.0]]),
            Region("the red car", (15, 26), [CAR]),
        ],
    )
    [record] = fixed.render(sample, "grounded-caption", seed=0)
    assert record["conversations"][1]["content"] == (
        "Two dogs[[015,041,171,458;500,500,998,997]] chase the red car[[156,104,468,812]]."
    )  # C2: no space before [[; C1: the border box is clamped to 639/479 px before flooring
    decoded = fixed.parse(record)  # the [[x0,y0,x1,y1]] hint in the question is not a box
    assert [len(d.boxes) for d in decoded] == [2, 1]
    assert decoded[0].boxes[1] == [320.32, 240.24, 639.04, 478.8]


def test_edge_boxes_are_clamped_to_size_minus_one_as_cogcom_refine_box():
    """CONFORMANCE.md C1 test vectors: CogCoM clamps pixels to size - 1 before flooring."""
    assert spell([CAR], 640, 480) == "[[156,104,468,812]]"
    assert spell([[0.0, 0.0, 640.0, 480.0]], 640, 480) == "[[000,000,998,997]]"
    assert spell([[0.0, 0.0, 333.0, 500.0]], 333, 500) == "[[000,000,996,998]]"
    assert spell([[0.0, 53.0, 333.0, 500.0]], 333, 500) == "[[000,106,996,998]]"  # the demo's "the rock"


def test_pointing_lists_shuffled_candidates_and_answers_with_one(fixed):
    sample = Sample(
        id="visual7w/pointing/7",
        dataset="visual7w",
        split="val",
        image=ImageRef(file="v7w_7.jpg", width=640, height=480),
        text="Which object is red?",
        answer=None,
        regions=[
            Region("car", None, [CAR], role="answer"),
            Region("tree", None, [[0.0, 0.0, 64.0, 48.0]], role="choice"),
            Region("dog", None, [[320.0, 240.0, 640.0, 480.0]], role="choice"),
            Region("sky", None, [[0.0, 0.0, 640.0, 48.0]], role="choice"),
        ],
    )
    records = [fixed.render(sample, "pointing", seed=s)[0] for s in range(8)]
    user, assistant = records[0]["conversations"]
    assert assistant["content"] == "[[156,104,468,812]]"
    assert user["content"].startswith("Which object is red? Candidates: [[")
    for box in ("[[156,104,468,812]]", "[[000,000,100,100]]", "[[500,500,998,997]]", "[[000,000,998,100]]"):
        assert user["content"].count(box) == 1
    assert len({r["conversations"][0]["content"] for r in records}) > 1  # order depends on the seed
    decoded = fixed.parse(records[0])
    assert [d.role for d in decoded] == ["answer", "choice", "choice", "choice"]
    assert fixed.render(sample, "pointing", seed=3) == fixed.render(sample, "pointing", seed=3)


def test_default_templates_are_used_and_the_rec_phrase_is_recovered():
    writer = CogVlmWriter()
    table = Templates.load("cogvlm").table
    assert "Where is {phrase}?" in table["rec"]["en"]
    assert table["grounded-caption"]["en"][0].startswith("Can you provide a description of the image")
    for seed in range(20):
        [record] = writer.render(car_sample(), "rec", seed=seed)
        assert writer.parse(record)[0].phrase == "the red car"
    [record] = CogVlmWriter.from_mapping({"language": "zh"}).render(car_sample(), "reg", seed=0)
    assert "[[156,104,468,812]]" in record["conversations"][0]["content"]
    assert record["conversations"][0]["content"] in [
        t.replace("{boxes}", "[[156,104,468,812]]") for t in table["reg"]["zh"]
    ]


def test_records_fit_the_writer_schema(fixed):
    records = fixed.render(car_sample(), "rec", 0) + fixed.render(car_sample(), "reg", 0)
    table = pa.Table.from_pylist(records, schema=fixed.schema())
    assert table.column("conversations").to_pylist()[0][1] == {
        "role": "assistant",
        "content": "[[156,104,468,812]]",
    }


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
    writer = CogVlmWriter()
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
        spelled = record["conversations"][0 if task == "reg" else 1]["content"]
        digits = spelled[spelled.index("[[") + 2 : spelled.index("]]")].split(",")
        assert all(len(d) == 3 and 0 <= int(d) <= 999 for d in digits)
        [decoded] = writer.parse(record)
        step_x, step_y = writer.tolerance(width, height)
        for i, (got, want) in enumerate(zip(decoded.boxes[0], box, strict=True)):
            assert abs(got - want) <= (step_x if i % 2 == 0 else step_y) + 1e-9


# --- bad records --------------------------------------------------------------------------------------


def rec_record(answer: str, **extra) -> dict:
    turns = [{"role": "user", "content": "Where is it?"}, {"role": "assistant", "content": answer}]
    return {"id": "r", "task": "rec", "width": 640, "height": 480, "conversations": turns} | extra


@pytest.mark.parametrize(
    "answer",
    [
        "[[156,104,468,1000]]",  # out of range
        "[[156,104,468]]",  # three values
        "[[156,104,468,8a2]]",  # not a number
        "[[156,104,468,812]",  # unterminated
        "[[156,104,468,812;]]",  # empty second box
        "no box here",
        "[[156,104,468,812]] and [[1,2,3,4]]",  # two groups for one REC answer
    ],
)
def test_parse_rejects_malformed_boxes(answer):
    with pytest.raises(RecordError) as err:
        CogVlmWriter().parse(rec_record(answer))
    assert err.value.reason == "bad-box"


def test_parse_rejects_bad_records():
    with pytest.raises(RecordError) as err:
        CogVlmWriter().parse(rec_record("[[156,104,468,812]]", height=None))
    assert err.value.reason == "bad-size"
    with pytest.raises(RecordError) as err:
        CogVlmWriter().parse(rec_record("[[156,104,468,812]]", conversations=[]))
    assert err.value.reason == "missing-key"
    swapped = rec_record("x")
    swapped["conversations"].reverse()
    with pytest.raises(RecordError) as err:
        CogVlmWriter().parse(swapped)
    assert err.value.reason == "wrong-type"


def test_too_thin_box_and_bracketed_text_are_refused():
    sample = car_sample()
    sample.image.width = 5000
    sample.regions[0].boxes = [[1000.0, 50.0, 1002.0, 390.0]]
    with pytest.raises(RecordError) as err:
        CogVlmWriter().render(sample, "rec", seed=0)
    assert err.value.reason == "empty-box"
    sample = car_sample()
    sample.regions[0].phrase = "the [[red]] car"
    with pytest.raises(RecordError) as err:
        CogVlmWriter().render(sample, "reg", seed=0)
    assert err.value.reason == "render-failed"
