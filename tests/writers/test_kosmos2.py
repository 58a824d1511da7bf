"""KOSMOS-2 writer: golden strings, parse errors, and agreement with transformers' reference functions."""

from __future__ import annotations

import importlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding_convert.boxes import (
    box_to_patch_indices,
    max_abs_error,
    normalize,
    patch_indices_to_box,
    patch_indices_to_normalized,
)
from grounding_convert.errors import RecordError, UsageError
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.writers.base import Decoded, WriterOptions
from grounding_convert.writers.kosmos2 import (
    Kosmos2Writer,
    extract_entities_with_patch_indices,
    grounded_text,
    object_tokens,
    patch_token,
)

W, H = 640, 480
CAR = [100.0, 50.0, 300.0, 390.0]  # FORMATS.md worked example
CAR_OBJECT = "<object><patch_index_0101><patch_index_0814></object>"
CAR_DECODED = [110.0, 52.5, 290.0, 382.5]  # centres of cells (5,3) and (14,25), by hand
CORNER = [400.0, 240.0, 640.0, 480.0]  # cells (20,16)=532 .. (31,31)=1023, by hand
DELIM = "</delimiter_of_multi_objects/>"

# The transformers docstring / microsoft/kosmos-2-patch14-224 model card generation, and what it decodes to.
CARD = (
    "<grounding> An image of<phrase> a snowman</phrase><object><patch_index_0044><patch_index_0863></object>"
    " warming himself by<phrase> a fire</phrase><object><patch_index_0005><patch_index_0911></object>."
)
CARD_ENTITIES = [(" a snowman", (31, 41), [(44, 863)]), (" a fire", (130, 137), [(5, 911)])]
CARD_NORMALIZED = {
    "a snowman": [0.390625, 0.046875, 0.984375, 0.828125],
    "a fire": [0.171875, 0.015625, 0.484375, 0.890625],
}


def make_sample(text: str, regions: list[Region], width: int = W, height: int = H) -> Sample:
    return Sample(
        id="test/1",
        dataset="flickr30k_entities",
        split="train",
        image=ImageRef(file="img/1.jpg", width=width, height=height),
        text=text,
        regions=regions,
    )


def car_sample(text: str = "An image of the red car.", start: int = 12) -> Sample:
    return make_sample(text, [Region("the red car", (start, start + len("the red car")), [CAR])])


@pytest.fixture(scope="module")
def writer() -> Kosmos2Writer:
    return Kosmos2Writer()


@pytest.fixture(scope="module")
def hf():
    """transformers' KOSMOS-2 processing module: pure Python, importable without torch or downloads."""
    return importlib.import_module("transformers.models.kosmos2.processing_kosmos2")


def one(writer: Kosmos2Writer, sample: Sample, task: str, seed: int = 0) -> dict:
    records = writer.render(sample, task, seed)
    assert len(records) == 1
    return records[0]


# --- box spelling -------------------------------------------------------------------------------------


def test_worked_example_tokens():
    assert box_to_patch_indices(CAR, W, H) == (101, 814)
    assert patch_token(101) + patch_token(814) == "<patch_index_0101><patch_index_0814>"
    assert patch_token(0) == "<patch_index_0000>" and patch_token(1023) == "<patch_index_1023>"
    assert object_tokens([CAR], W, H) == CAR_OBJECT
    assert patch_indices_to_box(101, 814, W, H) == CAR_DECODED


def test_hand_computed_corner_cases():
    # whole image: first and last cell, decoded to their centres
    assert object_tokens([[0, 0, W, H]], W, H) == "<object><patch_index_0000><patch_index_1023></object>"
    assert patch_indices_to_box(0, 1023, W, H) == [10.0, 7.5, 630.0, 472.5]
    # a box inside one cell decodes to the whole cell
    assert object_tokens([[1, 1, 10, 10]], W, H) == "<object><patch_index_0000><patch_index_0000></object>"
    assert patch_indices_to_box(0, 0, W, H) == [0.0, 0.0, 20.0, 15.0]
    # a box one column wide keeps cell edges (transformers' "same row or column" branch)
    assert box_to_patch_indices([20, 15, 40, 60], W, H) == (33, 97)
    assert patch_indices_to_box(33, 97, W, H) == [20.0, 15.0, 40.0, 60.0]
    assert box_to_patch_indices(CORNER, W, H) == (532, 1023)


def test_multi_box_phrase_uses_delimiter(writer):
    sample = make_sample("Two cars.", [Region("Two cars", (0, 8), [CAR, CORNER])])
    record = one(writer, sample, "grounded-caption")
    multi = f"<object><patch_index_0101><patch_index_0814>{DELIM}<patch_index_0532><patch_index_1023></object>"
    assert record["text"] == f"<grounding><phrase> Two cars</phrase>{multi}."
    [decoded] = writer.parse(record)
    assert decoded.phrase == "Two cars"
    assert decoded.boxes == [CAR_DECODED, [410.0, 247.5, 630.0, 472.5]]
    rec = one(writer, sample, "rec")
    assert rec["completion"] == multi


# --- grounded captions --------------------------------------------------------------------------------


def test_grounded_caption_golden(writer):
    record = one(writer, car_sample(), "grounded-caption")
    golden = f"<grounding> An image of<phrase> the red car</phrase>{CAR_OBJECT}."
    assert record["text"] == golden
    assert record["prompt"] == "<grounding>"
    assert record["completion"] == golden[len("<grounding>") :]
    assert record["prompt"] + record["completion"] == record["text"]
    assert {k: record[k] for k in ("id", "sample_id", "task", "image", "width", "height")} == {
        "id": "test/1/grounded-caption",
        "sample_id": "test/1",
        "task": "grounded-caption",
        "image": "img/1.jpg",
        "width": W,
        "height": H,
    }
    assert set(record) == set(writer.schema().names)
    assert writer.parse(record) == [Decoded("the red car", [CAR_DECODED], None)]


def test_phrase_at_start_takes_the_leading_space(writer):
    # model card "Phrase Grounding": "<grounding><phrase> a snowman</phrase><object>…</object> is warming…"
    record = one(writer, car_sample("the red car is parked.", 0), "grounded-caption")
    assert record["text"] == f"<grounding><phrase> the red car</phrase>{CAR_OBJECT} is parked."


def test_several_phrases_unboxed_phrase_and_punctuation(writer):
    text = "A man (in red) beside a car, a dog."
    regions = [
        Region("A man", (0, 5), [CAR]),
        Region("red", (10, 13), [CORNER]),  # after "(in ": only the space moves in
        Region("a car", (22, 27), []),  # no box: stays plain text
        Region("a dog", (29, 34), [[0, 0, W, H]]),  # after ", "
    ]
    record = one(writer, make_sample(text, regions), "grounded-caption")
    corner = "<object><patch_index_0532><patch_index_1023></object>"
    whole = "<object><patch_index_0000><patch_index_1023></object>"
    assert record["text"] == (
        f"<grounding><phrase> A man</phrase>{CAR_OBJECT} (in<phrase> red</phrase>{corner}) beside a car,"
        f"<phrase> a dog</phrase>{whole}."
    )
    assert [d.phrase for d in writer.parse(record)] == ["A man", "red", "a dog"]


def test_adjacent_and_unspaced_phrases():
    assert grounded_text("(car)", [((1, 4), "<o>")]) == " (<phrase>car</phrase><o>)"
    assert grounded_text("ab", [((0, 1), "<x>"), ((1, 2), "<y>")]) == "<phrase> a</phrase><x><phrase>b</phrase><y>"


def test_no_grounded_caption_without_boxed_spans(writer):
    assert writer.render(make_sample("A car.", [Region("A car", (0, 5), [])]), "grounded-caption", 0) == []


def test_card_generation_parses_to_card_entities(writer, hf):
    record = {"task": "grounded-caption", "width": W, "height": H, "prompt": "<grounding>"}
    record["completion"] = CARD[len("<grounding>") :]
    decoded = writer.parse(record)
    assert [d.phrase for d in decoded] == list(CARD_NORMALIZED)
    for d in decoded:
        x1, y1, x2, y2 = CARD_NORMALIZED[d.phrase]
        assert d.boxes == [[x1 * W, y1 * H, x2 * W, y2 * H]]
    # and transformers' own cleanup of the same string agrees
    clean, entities = hf.clean_text_and_extract_entities_with_bboxes(CARD)
    assert clean == "An image of a snowman warming himself by a fire."
    assert {name: list(boxes[0]) for name, _, boxes in entities} == CARD_NORMALIZED


def test_extract_entities_goldens():
    assert extract_entities_with_patch_indices(CARD) == CARD_ENTITIES
    bare = f"x<object><patch_index_0001><patch_index_0034>{DELIM}<patch_index_0002><patch_index_0035></object>"
    assert extract_entities_with_patch_indices(bare) == [
        ("<patch_index_1><patch_index_34>", (1, 1), [(1, 34)]),
        ("<patch_index_2><patch_index_35>", (1, 1), [(2, 35)]),
    ]
    assert extract_entities_with_patch_indices("<phrase> lone</phrase> text") == []


# --- REC / REG / pointing -----------------------------------------------------------------------------


def test_rec_prompt_exact(writer):
    record = one(writer, car_sample(), "rec")
    assert record["id"] == "test/1/rec/0"
    assert record["prompt"] == "<grounding><phrase> the red car</phrase>"
    assert record["completion"] == CAR_OBJECT
    assert record["text"] == f"<grounding><phrase> the red car</phrase>{CAR_OBJECT}"
    assert writer.parse(record) == [Decoded("the red car", [CAR_DECODED], None)]


def test_reg_prompt_exact(writer):
    record = one(writer, car_sample(), "reg")
    assert record["prompt"] == f"<grounding><phrase> It</phrase>{CAR_OBJECT} is"
    assert record["completion"] == " the red car"
    assert record["text"] == f"<grounding><phrase> It</phrase>{CAR_OBJECT} is the red car"
    assert writer.parse(record) == [Decoded("the red car", [CAR_DECODED], None)]


def test_chinese_language_falls_back_to_english(writer):
    zh = Kosmos2Writer(WriterOptions(language="zh"))
    assert one(zh, car_sample(), "rec") == one(writer, car_sample(), "rec")


def test_pointing(writer):
    regions = [
        Region("the red car", None, [CAR], role="answer"),
        Region("a tree", None, [CORNER], role="choice"),
        Region("a dog", None, [[0, 0, 20, 15]], role="choice"),
        Region("a cat", None, [[0, 0, W, H]], role="choice"),
    ]
    sample = make_sample("Which car is red?", regions)
    record = one(writer, sample, "pointing", seed=3)
    assert record == one(writer, sample, "pointing", seed=3)  # same seed, same candidate order
    assert record["completion"] == CAR_OBJECT
    assert record["prompt"].startswith("<grounding> Question: Which car is red? Candidates:<object>")
    assert record["prompt"].endswith("</object> Answer:")
    decoded = writer.parse(record)
    choices = sorted(tuple(d.boxes[0]) for d in decoded if d.role == "choice")
    assert len(choices) == 4 and tuple(CAR_DECODED) in choices
    assert [d.boxes for d in decoded if d.role == "answer"] == [[CAR_DECODED]]
    orders = {one(writer, sample, "pointing", seed=s)["prompt"] for s in range(20)}
    assert len(orders) > 1  # the answer is not always in the same place


# --- render errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "task", "reason"),
    [
        (make_sample("a <b> c", [Region("<b>", (2, 5), [CAR])]), "grounded-caption", "render-failed"),
        (
            make_sample("see <object> here", [Region("see", (0, 3), [CAR])]),
            "grounded-caption",
            "render-failed",
        ),
        (make_sample("x", [Region("a<b", None, [CAR])]), "rec", "render-failed"),
        (make_sample("x", [Region("  ", None, [CAR])]), "rec", "bad-text"),
        (make_sample("x", [Region("car", None, [[10, 10, 10, 20]])]), "rec", "empty-box"),
        (make_sample("car", [Region("car", (0, 9), [CAR])]), "grounded-caption", "bad-span"),
        (make_sample("car", [Region("car", None, [CAR])], width=0), "rec", "bad-size"),
    ],
)
def test_render_errors(writer, sample, task, reason):
    with pytest.raises(RecordError) as info:
        writer.render(sample, task, 0)
    assert info.value.reason == reason


def test_bad_template_is_a_usage_error(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text('rec:\n  en: ["<grounding><phrase> {expression}</phrase>"]\n', encoding="utf-8")
    with pytest.raises(UsageError, match="expression"):
        Kosmos2Writer(WriterOptions(template_file=str(path))).render(car_sample(), "rec", 0)


# --- parse errors -------------------------------------------------------------------------------------


def rec_record(completion: str, prompt: str = "<grounding><phrase> car</phrase>", **extra) -> dict:
    return {"task": "rec", "width": W, "height": H, "prompt": prompt, "completion": completion} | extra


@pytest.mark.parametrize(
    "completion",
    [
        "<object><patch_index_1024><patch_index_0001></object>",  # index past 1023
        "<object><patch_index_0000><patch_index_1024></object>",  # past 1023, yet "below right" of 0
        "<object><patch_index_0000><patch_index_99999></object>",  # 5 digits
        "<object><patch_index_101><patch_index_0814></object>",  # not zero padded
        "<object><patch_index_01a1><patch_index_0814></object>",
        "<object><patch_index_0101></object>",  # one corner only
        "<object><patch_index_0101><patch_index_0814>",  # unclosed
        "<patch_index_0101><patch_index_0814></object>",  # unopened
        f"<object><patch_index_0101><patch_index_0814>{DELIM}</object>",  # dangling delimiter
        "<object><patch_index_0101> <patch_index_0814></object>",  # space inside
        "<object><patch_index_0814><patch_index_0101></object>",  # lower-right first
        "<object><patch_index_0031><patch_index_0032></object>",  # column 31 then column 0
        "<object><patch_index_0101<patch_index_0814></object>",
    ],
)
def test_malformed_tokens_are_bad_box(writer, completion):
    with pytest.raises(RecordError) as info:
        writer.parse(rec_record(completion))
    assert info.value.reason == "bad-box"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (rec_record(CAR_OBJECT, width=0), "bad-size"),
        (rec_record(CAR_OBJECT, height=None), "bad-size"),
        ({"task": "rec", "width": W, "height": H, "prompt": "<grounding>"}, "missing-key"),
        (rec_record(CAR_OBJECT, text="something else"), "bad-record"),
    ],
)
def test_parse_record_errors(writer, record, reason):
    with pytest.raises(RecordError) as info:
        writer.parse(record)
    assert info.value.reason == reason


def test_tolerance_is_one_cell(writer):
    assert writer.tolerance(W, H) == (20.0, 15.0)


# --- properties ---------------------------------------------------------------------------------------

sizes = st.tuples(st.integers(1, 5000), st.integers(1, 5000))


@st.composite
def box_in(draw, width: int, height: int):
    """A non-empty box inside a ``width × height`` image: integer pixels or arbitrary floats per axis."""

    def edges(size: int) -> tuple[float, float]:
        if size > 1 and draw(st.booleans()):
            a, b = sorted(draw(st.lists(st.integers(0, size), min_size=2, max_size=2, unique=True)))
            return float(a), float(b)
        a = draw(st.floats(0, 1 - 1e-6))
        b = draw(st.floats(a + 1e-6, 1))
        return a * size, b * size

    x1, x2 = edges(width)
    y1, y2 = edges(height)
    return [x1, y1, x2, y2]


@st.composite
def sized_box(draw):
    width, height = draw(sizes)
    return width, height, draw(box_in(width, height))


INDEX = re.compile(r"<patch_index_(\d{4})>")


@settings(max_examples=300, deadline=None)
@given(sized_box())
def test_round_trip_within_one_cell(args):
    width, height, box = args
    writer = Kosmos2Writer()
    sample = make_sample("x", [Region("thing", None, [box])], width, height)
    record = one(writer, sample, "rec")
    indices = [int(i) for i in INDEX.findall(record["completion"])]
    assert len(indices) == 2 and all(0 <= i <= 1023 for i in indices)
    [decoded] = writer.parse(record)
    dx, dy = max_abs_error(decoded.boxes[0], box)
    tx, ty = writer.tolerance(width, height)
    assert dx <= tx * (1 + 1e-9) and dy <= ty * (1 + 1e-9)


@settings(max_examples=300, deadline=None)
@given(sized_box())
def test_patch_indices_match_transformers(hf, args):
    width, height, box = args
    assert box_to_patch_indices(box, width, height) == hf.coordinate_to_patch_index(
        tuple(normalize(box, width, height)), 32
    )


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 1023), st.integers(0, 1023))
def test_patch_decoding_matches_transformers(hf, ul, lr):
    assert tuple(patch_indices_to_normalized(ul, lr)) == hf.patch_index_to_coordinate(ul, lr, 32)


def test_patch_decoding_matches_transformers_sweep(hf):
    for ul in range(1024):
        for lr in (ul, ul | 31, min(1023, ul + 33), 1023, (ul % 32) + 992):
            assert tuple(patch_indices_to_normalized(ul, lr)) == hf.patch_index_to_coordinate(ul, lr, 32)


words = st.sampled_from(["a", "red", "car", "the", "dog", "on", "grass", "é", "two", "(big)", "cat,"])


@st.composite
def caption_sample(draw):
    """A caption of random words, some runs of which are grounded with 1–3 boxes each."""
    width, height = draw(sizes)
    tokens = draw(st.lists(words, min_size=1, max_size=12))
    text = " ".join(tokens)
    bounds, pos = [], 0
    for token in tokens:
        bounds.append((pos, pos + len(token)))
        pos += len(token) + 1
    regions, i = [], 0
    while i < len(tokens):
        j = min(len(tokens), i + draw(st.integers(1, 3)))
        if draw(st.booleans()):
            span = (bounds[i][0], bounds[j - 1][1])
            boxes = draw(st.lists(box_in(width, height), min_size=1, max_size=3))
            regions.append(Region(text[span[0] : span[1]], span, boxes))
        i = j
    return make_sample(text, regions, width, height)


@settings(max_examples=200, deadline=None)
@given(caption_sample())
def test_grounded_caption_agrees_with_transformers(hf, sample):
    writer = Kosmos2Writer()
    records = writer.render(sample, "grounded-caption", 0)
    if not sample.regions:
        assert records == []
        return
    [record] = records
    text = record["text"]
    assert extract_entities_with_patch_indices(text) == hf.extract_entities_with_patch_indices(text)
    # transformers' cleanup gives back the caption and the phrase spans exactly
    clean, entities = hf.clean_text_and_extract_entities_with_bboxes(text)
    assert clean == sample.text
    assert [(name, span) for name, span, _ in entities] == [(r.phrase, r.span) for r in sample.regions]
    decoded = writer.parse(record)
    assert [d.phrase for d in decoded] == [r.phrase for r in sample.regions]
    w, h = sample.image.width, sample.image.height
    tx, ty = writer.tolerance(w, h)
    for d, region, (_, _, normalized) in zip(decoded, sample.regions, entities, strict=True):
        assert d.boxes == [[x1 * w, y1 * h, x2 * w, y2 * h] for x1, y1, x2, y2 in normalized]
        for got, want in zip(d.boxes, region.boxes, strict=True):
            dx, dy = max_abs_error(got, want)
            assert dx <= tx * (1 + 1e-9) and dy <= ty * (1 + 1e-9)
