"""Qwen-VL writer: FORMATS.md golden strings, exact records, parse errors, and round trips."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding_convert import boxes
from grounding_convert.errors import RecordError
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.templates import Templates
from grounding_convert.writers.base import WriterOptions
from grounding_convert.writers.qwen_vl import QUANTIZER, QwenVlWriter, box_tokens

ONE_TEMPLATE = {
    "rec": {"en": ["Generate the bounding box of {phrase}"], "zh": ["框出图中的{phrase}"]},
    "reg": {"en": ["<ref>This</ref>{boxes} is"], "zh": ["<ref>这</ref>{boxes}是什么？"]},
    "grounded-caption": {"en": ["Generate the caption in English with grounding:"], "zh": ["中文描述："]},
    "pointing": {"en": ["{question} Candidates: {candidates}."], "zh": ["{question} 候选：{candidates}。"]},
}


@pytest.fixture()
def fixed_templates(tmp_path: Path) -> str:
    path = tmp_path / "qwen.yaml"
    path.write_text(yaml.safe_dump(ONE_TEMPLATE, allow_unicode=True), encoding="utf-8")
    return str(path)


def writer(template_file: str | None = None, **options) -> QwenVlWriter:
    return QwenVlWriter(WriterOptions(template_file=template_file, **options))


def car_sample(**changes) -> Sample:
    values = dict(
        id="refcoco/unc/7/3",
        dataset="refcoco",
        split="val",
        image=ImageRef(file="train2014/COCO_train2014_000000000042.jpg", id="42", width=640, height=480),
        text="the red car",
        regions=[Region(phrase="the red car", span=(0, 11), boxes=[[100.0, 50.0, 300.0, 390.0]])],
    )
    values.update(changes)
    return Sample(**values)


def caption_sample() -> Sample:
    text = "A man in sunglasses walks past two dogs near the sea ."
    return Sample(
        id="flickr30k_entities/1/0",
        dataset="flickr30k_entities",
        split="test",
        image=ImageRef(file="1.jpg", width=500, height=400),
        text=text,
        regions=[
            Region(phrase="A man", span=(0, 5), boxes=[[10.0, 20.0, 210.0, 390.0]]),
            Region(phrase="sunglasses", span=(9, 19), boxes=[[50.0, 40.0, 90.0, 60.0]]),
            Region(
                phrase="two dogs",
                span=(31, 39),
                boxes=[[250.0, 200.0, 350.0, 300.0], [360.0, 210.0, 500.0, 400.0]],
            ),
            Region(phrase="the sea", span=(45, 52), boxes=[]),  # no box: stays plain text
        ],
    )


def pointing_sample() -> Sample:
    return Sample(
        id="visual7w/5",
        dataset="visual7w",
        split="test",
        image=ImageRef(file="images/v7w_7.jpg", width=800, height=600),
        text="Which object is used to cut bread?",
        answer="knife",
        regions=[
            Region(phrase="fork", boxes=[[0.0, 0.0, 80.0, 60.0]], role="choice"),
            Region(phrase="knife", boxes=[[400.0, 300.0, 560.0, 420.0]], role="answer"),
            Region(phrase="plate", boxes=[[100.0, 100.0, 300.0, 250.0]], role="choice"),
            Region(phrase="cup", boxes=[[600.0, 50.0, 800.0, 600.0]], role="choice"),
        ],
    )


def user(image: str, prompt: str) -> dict[str, str]:
    return {"from": "user", "value": f"Picture 1: <img>{image}</img>\n{prompt}"}


def assistant(value: str) -> dict[str, str]:
    return {"from": "assistant", "value": value}


# --- FORMATS.md worked example ----------------------------------------------------------------------


def test_worked_example_byte_for_byte(fixed_templates: str) -> None:
    assert box_tokens([100, 50, 300, 390], 640, 480) == "<box>(156,104),(468,812)</box>"
    [record] = writer(fixed_templates).render(car_sample(), "rec", seed=0)
    assert record["conversations"][1]["value"] == "<ref>the red car</ref><box>(156,104),(468,812)</box>"


def grounded_conformance_sample(text: str, start: int) -> Sample:
    phrase_end = start + len("the red car")
    region = Region(phrase=text[start:phrase_end], span=(start, phrase_end), boxes=[[100.0, 50.0, 300.0, 390.0]])
    return car_sample(text=text, regions=[region])


def fetch_all_box_with_ref(text: str) -> list[dict]:
    """CONFORMANCE.md §1: tokenization_qwen.py ``_fetch_all_box_with_ref``: each ``<box>`` takes the ``<ref>``
    right before it, ``.strip()``ped (a re-implementation of the quoted rule, as the tokenizer splits tags)."""
    import re

    items = [m for m in re.finditer(r"<ref>(.*?)</ref>|<box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>", text)]
    out, previous = [], None
    for item in items:
        if item.group(1) is not None:
            previous = item
            continue
        box = {"box": [int(v) for v in item.groups()[1:]]}
        if previous is not None and previous.end() == item.start():
            box["ref"] = previous.group(1).strip()
        out.append(box)
        previous = item
    return out


def test_grounded_caption_space_inside_ref_conformance_vectors(fixed_templates: str) -> None:
    """CONFORMANCE.md Q1: the space before a phrase goes inside <ref>, also at position 0."""
    w = writer(fixed_templates)
    sample = grounded_conformance_sample("A man stands next to the red car.", 21)
    [record] = w.render(sample, "grounded-caption", seed=0)
    reply = record["conversations"][1]["value"]
    assert reply == "A man stands next to<ref> the red car</ref><box>(156,104),(468,812)</box>."
    assert fetch_all_box_with_ref(reply) == [{"box": [156, 104, 468, 812], "ref": "the red car"}]
    sample = grounded_conformance_sample("The red car is parked.", 0)
    [record] = w.render(sample, "grounded-caption", seed=0)
    reply = record["conversations"][1]["value"]
    assert reply == "<ref> The red car</ref><box>(156,104),(468,812)</box> is parked."
    assert fetch_all_box_with_ref(reply) == [{"box": [156, 104, 468, 812], "ref": "The red car"}]
    assert [d.phrase for d in w.parse(record)] == ["The red car"]


def test_image_path_over_256_bytes_is_refused(fixed_templates: str) -> None:
    """CONFORMANCE.md Q3: tokenization_qwen.py raises beyond IMG_TOKEN_SPAN = 256 bytes; 256 is allowed."""
    w = writer(fixed_templates)
    ok = "é" * 127 + "xy"  # 256 UTF-8 bytes
    [record] = w.render(car_sample(image=ImageRef(file=ok, width=640, height=480)), "rec", seed=0)
    assert record["image"] == ok
    for long in ("é" * 127 + "xyz", "a" * 257):
        sample = car_sample(image=ImageRef(file=long, width=640, height=480))
        assert not w.batchable(sample)
        with pytest.raises(RecordError, match="257 bytes; qwen-vl's tokenizer allows 256") as err:
            w.render(sample, "rec", seed=0)
        assert err.value.reason == "render-failed"
    prefixed = writer(fixed_templates, image_prefix="/data/" + "p" * 250)  # the prefix counts too
    with pytest.raises(RecordError, match="render-failed|bytes"):
        prefixed.render(car_sample(image=ImageRef(file="a.jpg", width=640, height=480)), "rec", seed=0)


def test_truncation_clamp_and_border() -> None:
    # 812.5 truncates to 812 (not 813); a box touching the right/bottom border clamps to 999.
    assert QUANTIZER.encode(390, 480) == 812
    assert box_tokens([0, 0, 640, 480], 640, 480) == "<box>(0,0),(999,999)</box>"
    # A sliver at the border would collapse to one point after the clamp: refused and counted, not spelled.
    with pytest.raises(RecordError, match="collapses"):
        box_tokens([639.99, 479.99, 640, 480], 640, 480)


def test_full_rec_record(fixed_templates: str) -> None:
    [record] = writer(fixed_templates).render(car_sample(), "rec", seed=0)
    assert record == {
        "id": "refcoco/unc/7/3/rec/0",
        "sample_id": "refcoco/unc/7/3",
        "task": "rec",
        "image": "train2014/COCO_train2014_000000000042.jpg",
        "width": 640,
        "height": 480,
        "conversations": [
            user("train2014/COCO_train2014_000000000042.jpg", "Generate the bounding box of the red car"),
            assistant("<ref>the red car</ref><box>(156,104),(468,812)</box>"),
        ],
    }


def test_full_reg_record_does_not_leak_the_phrase(fixed_templates: str) -> None:
    [record] = writer(fixed_templates, image_prefix="/data/coco/").render(car_sample(), "reg", seed=0)
    assert record["image"] == "/data/coco/train2014/COCO_train2014_000000000042.jpg"
    assert record["conversations"] == [
        user(
            "/data/coco/train2014/COCO_train2014_000000000042.jpg",
            "<ref>This</ref><box>(156,104),(468,812)</box> is",
        ),
        assistant("the red car"),
    ]


def test_every_shipped_reg_template_hides_the_phrase() -> None:
    shipped = Templates.load("qwen-vl").table
    assert set(shipped) == {"rec", "reg", "grounded-caption", "pointing"}
    w = writer()
    sample = car_sample()
    for language in ("en", "zh"):
        assert len(shipped["rec"][language]) >= 3
        for template in shipped["reg"][language]:
            assert "{phrase}" not in template and "{boxes}" in template
    # Whatever phrasing is drawn, the REG question holds the box and never the phrase.
    for seed in range(40):
        [record] = w.render(sample, "reg", seed)
        question = record["conversations"][0]["value"]
        assert "<box>(156,104),(468,812)</box>" in question and "red car" not in question


def test_multi_box_phrase_repeats_box_after_one_ref(fixed_templates: str) -> None:
    sample = car_sample(
        text="two cars",
        regions=[Region(phrase="two cars", span=(0, 8), boxes=[[100, 50, 300, 390], [320, 0, 640, 240]])],
    )
    w = writer(fixed_templates)
    [record] = w.render(sample, "rec", seed=0)
    reply = "<ref>two cars</ref><box>(156,104),(468,812)</box><box>(500,0),(999,500)</box>"
    assert record["conversations"][1]["value"] == reply
    [decoded] = w.parse(record)
    assert decoded.phrase == "two cars" and len(decoded.boxes) == 2


def test_grounded_caption_inline_tags_and_boxless_phrase(fixed_templates: str) -> None:
    w = writer(fixed_templates)
    [record] = w.render(caption_sample(), "grounded-caption", seed=3)
    assert record["id"] == "flickr30k_entities/1/0/grounded-caption"
    assert record["conversations"] == [
        user("1.jpg", "Generate the caption in English with grounding:"),
        assistant(
            "<ref> A man</ref><box>(20,50),(420,975)</box>"
            " in<ref> sunglasses</ref><box>(100,100),(180,150)</box>"
            " walks past<ref> two dogs</ref><box>(500,500),(700,750)</box><box>(720,525),(999,999)</box>"
            " near the sea ."
        ),
    ]
    decoded = w.parse(record)
    assert [d.phrase for d in decoded] == ["A man", "sunglasses", "two dogs"]
    assert [len(d.boxes) for d in decoded] == [1, 1, 2]


def test_grounded_caption_overlapping_span_keeps_the_first(fixed_templates: str) -> None:
    sample = caption_sample()
    sample.regions.append(Region(phrase="man in sunglasses", span=(2, 19), boxes=[[1.0, 1.0, 2.0, 2.0]]))
    [record] = writer(fixed_templates).render(sample, "grounded-caption", seed=0)
    reply = record["conversations"][1]["value"]
    assert reply.count("<ref>") == 3 and "<ref>man in sunglasses</ref>" not in reply


def test_chinese_templates_when_language_zh(fixed_templates: str) -> None:
    w = writer(fixed_templates, language="zh")
    [rec] = w.render(car_sample(), "rec", seed=0)
    assert rec["conversations"][0]["value"].endswith("\n框出图中的the red car")
    [cap] = w.render(caption_sample(), "grounded-caption", seed=0)
    assert cap["conversations"][0]["value"].endswith("\n中文描述：")
    shipped = Templates.load("qwen-vl").table
    default = writer(language="zh")
    prompts = {default.render(car_sample(), "rec", s)[0]["conversations"][0]["value"] for s in range(30)}
    allowed = {
        f"Picture 1: <img>{car_sample().image.file}</img>\n" + t.format(phrase="the red car")
        for t in shipped["rec"]["zh"]
    }
    assert prompts <= allowed and len(prompts) > 1
    [cap] = default.render(caption_sample(), "grounded-caption", seed=0)
    assert cap["conversations"][0]["value"].split("\n", 1)[1] in shipped["grounded-caption"]["zh"]


def test_pointing_record_and_parse(fixed_templates: str) -> None:
    w = writer(fixed_templates)
    [record] = w.render(pointing_sample(), "pointing", seed=0)
    assert record["id"] == "visual7w/5/pointing"
    assert record["conversations"] == [
        user(
            "images/v7w_7.jpg",
            "Which object is used to cut bread? Candidates: <box>(0,0),(100,100)</box>, "
            "<box>(500,500),(700,700)</box>, <box>(125,166),(375,416)</box>, <box>(750,83),(999,999)</box>.",
        ),
        assistant("<ref>knife</ref><box>(500,500),(700,700)</box>"),
    ]
    decoded = w.parse(record)
    assert [(d.phrase, d.role) for d in decoded] == [
        (None, "choice"),
        ("knife", "answer"),
        (None, "choice"),
        (None, "choice"),
    ]
    tol = w.tolerance(800, 600)
    for got, region in zip(decoded, pointing_sample().regions, strict=True):
        dx, dy = boxes.max_abs_error(got.boxes[0], region.boxes[0])
        assert dx <= tol[0] and dy <= tol[1]


def test_pointing_needs_one_box_per_candidate() -> None:
    sample = pointing_sample()
    sample.regions[0].boxes.append([1.0, 1.0, 5.0, 5.0])
    with pytest.raises(RecordError) as err:
        writer().render(sample, "pointing", seed=0)
    assert err.value.reason == "render-failed" and "fork" in err.value.message


def test_tasks_that_do_not_apply_give_no_records() -> None:
    w = writer()
    assert w.render(car_sample(), "pointing", seed=0) == []
    no_span = car_sample(regions=[Region(phrase="the red car", boxes=[[1.0, 1.0, 9.0, 9.0]])])
    assert w.render(no_span, "grounded-caption", seed=0) == []
    assert w.render(car_sample(regions=[Region(phrase="x", span=(0, 1))]), "rec", seed=0) == []


def test_records_fit_the_arrow_schema_and_are_deterministic() -> None:
    w = writer()
    records = [
        *w.render(car_sample(), "rec", 7),
        *w.render(car_sample(), "reg", 7),
        *w.render(caption_sample(), "grounded-caption", 7),
        *w.render(pointing_sample(), "pointing", 7),
    ]
    table = pa.Table.from_pylist(records, schema=w.schema())
    assert table.schema.field("conversations").type == pa.list_(
        pa.struct([("from", pa.string()), ("value", pa.string())])
    )
    assert table.to_pylist() == records
    again = [*w.render(car_sample(), "rec", 7), *w.render(car_sample(), "reg", 7)]
    assert again == records[:2]


def test_text_holding_qwen_tags_is_refused() -> None:
    sample = car_sample(regions=[Region(phrase="a <box> sign", boxes=[[1.0, 1.0, 9.0, 9.0]])])
    with pytest.raises(RecordError) as err:
        writer().render(sample, "rec", seed=0)
    assert err.value.reason == "render-failed" and "<box>" in err.value.message


def test_non_finite_box_is_a_record_error() -> None:
    sample = car_sample(regions=[Region(phrase="car", boxes=[[float("nan"), 1.0, 9.0, 9.0]])])
    with pytest.raises(RecordError) as err:
        writer().render(sample, "rec", seed=0)
    assert err.value.reason == "bad-box"


# --- parse errors -----------------------------------------------------------------------------------


def rec_record(reply: str, **changes) -> dict:
    record = {
        "id": "x/rec/0",
        "task": "rec",
        "width": 640,
        "height": 480,
        "conversations": [user("a.jpg", "Generate the bounding box of car"), assistant(reply)],
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("reply", "reason", "words"),
    [
        ("<ref>car</ref><box>(156,104),(468,1000)</box>", "bad-box", "outside 0..999"),
        ("<ref>car</ref><box>(156,104),(468)</box>", "bad-box", "integer coordinates"),
        ("<ref>car</ref><box>(156, 104),(468,812)</box>", "bad-box", "integer coordinates"),
        ("<ref>car</ref><box>(-1,104),(468,812)</box>", "bad-box", "integer coordinates"),
        ("<ref>car</ref><box>(156,104),(468,812)", "bad-box", "unbalanced <box>"),
        ("<ref>car<box>(156,104),(468,812)</box>", "bad-box", "unbalanced <ref>"),
        ("<ref>car</ref><box>(468,104),(156,812)</box>", "bad-box", "wrong way round"),
    ],
)
def test_parse_rejects_malformed_boxes(reply: str, reason: str, words: str) -> None:
    with pytest.raises(RecordError) as err:
        writer().parse(rec_record(reply))
    assert err.value.reason == reason and words in err.value.message


def test_parse_rejects_bad_records() -> None:
    w = writer()
    good = "<ref>car</ref><box>(156,104),(468,812)</box>"
    cases = [
        (rec_record(good, width=0), "bad-size"),
        (rec_record(good, height=None), "bad-size"),
        (rec_record(good, conversations=None), "missing-key"),
        (rec_record(good, conversations=[assistant(good), user("a.jpg", "x")]), "wrong-type"),
        (
            rec_record(good, conversations=[{"from": "user", "value": "no image\nx"}, assistant(good)]),
            "bad-record",
        ),
    ]
    for record, reason in cases:
        with pytest.raises(RecordError) as err:
            w.parse(record)
        assert err.value.reason == reason


def test_parse_reads_qwen_output_with_box_only_and_spaces() -> None:
    reply = "<ref> Woman</ref><box>(451,379),(731,806)</box> and <box>(219,424),(576,896)</box>"
    decoded = writer().parse(rec_record(reply, width=1000, height=1000))
    assert [(d.phrase, len(d.boxes)) for d in decoded] == [("Woman", 1), (None, 1)]  # ref text .strip()ped
    assert decoded[0].boxes[0] == [451.5, 379.5, 731.5, 806.5]


# --- round trips ------------------------------------------------------------------------------------


@st.composite
def image_and_box(draw):
    width = draw(st.integers(1, 5000))
    height = draw(st.integers(1, 5000))
    xs = sorted(draw(st.lists(st.floats(0, width), min_size=2, max_size=2)))
    ys = sorted(draw(st.lists(st.floats(0, height), min_size=2, max_size=2)))
    return width, height, [xs[0], ys[0], xs[1], ys[1]]


@settings(max_examples=300, deadline=None)
@given(image_and_box())
def test_rec_round_trip_within_one_step(case) -> None:
    width, height, box = case
    w = QwenVlWriter()
    sample = car_sample(image=ImageRef(file="a.jpg", width=width, height=height))
    sample.regions[0].boxes = [box]
    q = QUANTIZER.encode_box(box, width, height)
    if q[2] <= q[0] or q[3] <= q[1]:
        with pytest.raises(RecordError, match="collapses|no area"):
            w.render(sample, "rec", seed=1)
        return
    [record] = w.render(sample, "rec", seed=1)
    reply = record["conversations"][1]["value"]
    values = [int(v) for v in reply.split("<box>")[1].split("</box>")[0].strip("()").replace("),(", ",").split(",")]
    assert all(0 <= v <= 999 for v in values)
    [decoded] = w.parse(record)
    step_x, step_y = w.tolerance(width, height)
    dx, dy = boxes.max_abs_error(decoded.boxes[0], box)
    assert dx <= step_x * (1 + 1e-9) and dy <= step_y * (1 + 1e-9)


def test_flickr_excerpt_round_trip(flickr_excerpt: Path) -> None:
    """Every Flickr30K Entities caption of the real excerpt: rec, reg and grounded caption decode back."""
    from grounding_convert.readers.flickr30k_entities import Flickr30kEntitiesReader

    reader = Flickr30kEntitiesReader()
    samples = [
        item
        for partition in reader.plan(str(flickr_excerpt))
        for item in reader.read(partition)
        if isinstance(item, Sample)
    ]
    assert len(samples) == 1000  # 200 images x 5 captions
    w = QwenVlWriter()
    counts = {"rec": 0, "reg": 0, "grounded-caption": 0}
    for sample in samples:
        tol = w.tolerance(sample.image.width, sample.image.height)
        grounded = [r for r in sample.regions if r.role is None and r.boxes]
        for task in ("rec", "reg"):
            records = w.render(sample, task, seed=0)
            assert len(records) == len(grounded)
            counts[task] += len(records)
            for record, region in zip(records, grounded, strict=True):
                [decoded] = w.parse(record)
                assert decoded.phrase == region.phrase
                assert len(decoded.boxes) == len(region.boxes)
                for got, want in zip(decoded.boxes, region.boxes, strict=True):
                    dx, dy = boxes.max_abs_error(got, want)
                    assert dx <= tol[0] and dy <= tol[1], (record["id"], got, want)
        for record in w.render(sample, "grounded-caption", seed=0):
            counts["grounded-caption"] += 1
            reply = record["conversations"][1]["value"]
            plain = reply
            for decoded in w.parse(record):
                assert decoded.phrase in sample.text
            for tag in ("<ref>", "</ref>"):
                plain = plain.replace(tag, "")
            while "<box>" in plain:
                start = plain.index("<box>")
                plain = plain[:start] + plain[plain.index("</box>", start) + len("</box>") :]
            assert plain == (" " + sample.text if plain.startswith(" ") else sample.text)  # <ref> at 0 adds one
    # phrases with boxes; 4 of the 1000 captions have no phrase with a box (no grounded caption)
    assert counts == {"rec": 2999, "reg": 2999, "grounded-caption": 996}


def test_registered_as_a_plugin() -> None:
    from grounding_convert import plugins

    assert plugins.get_writer("qwen-vl") is QwenVlWriter
    assert QwenVlWriter.tasks == ("rec", "reg", "grounded-caption", "pointing")
    assert QwenVlWriter.from_mapping({"language": "zh"}).options.language == "zh"
