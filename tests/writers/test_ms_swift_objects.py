"""``--layout ms-swift-objects``: ms-swift's generic grounding records (FORMATS_NEXT §8).

Golden records for the worked example (W=640, H=480, box [100,50,300,390], "the red car"), a conformance check
against ms-swift's own placeholder filling and box normalization (re-implemented below from the quoted upstream
lines: ms-swift itself needs a Hub tokenizer/processor to build a template, so it is read here, not run), the
real Flickr30K Entities excerpt through ``convert`` → ``validate --source`` (CliRunner and one real process),
refusals, and a property: any size and boxes → record → parse gives the boxes back exactly.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import RecordError, UsageError
from grounding_convert.plugins import get_reader, get_writer
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.swift_objects import SWIFT_TAGS, SWIFT_TEMPLATES, SwiftObjects
from grounding_convert.synth import generate
from grounding_convert.tools.validate import validate
from grounding_convert.writers.base import Decoded

runner = CliRunner()
BIN = str(Path(sys.executable).parent / "grounding-convert")
CAPTION = "A man stands next to the red car."
CAR = [100.0, 50.0, 300.0, 390.0]
TARGETS = sorted(SWIFT_TEMPLATES)  # qwen-vl, qwen2-vl, qwen2.5-vl, qwen3-vl, internvl


def car(boxes=None, phrase="the red car", text=CAPTION, span=(21, 32)) -> Sample:
    return Sample(
        id="x/0",
        dataset="d",
        split="train",
        image=ImageRef(file="x.jpg", width=640, height=480),
        text=text,
        regions=[Region(phrase, span, [list(b) for b in boxes or [CAR]])],
    )


def objects_writer(target: str = "qwen2-vl", **options) -> SwiftObjects:
    writer = get_writer(target).from_mapping({"layout": "ms-swift-objects", **options})
    assert isinstance(writer, SwiftObjects)
    return writer


def one(task: str, sample: Sample | None = None, target: str = "qwen2-vl") -> dict:
    (record,) = objects_writer(target).render(sample or car(), task, 0)
    return record


# --- golden records ------------------------------------------------------------------------------------------


def common(task: str, record_id: str) -> dict:
    return {"id": record_id, "sample_id": "x/0", "task": task, "image": "x.jpg", "width": 640, "height": 480}


def test_golden_rec():
    assert one("rec") == {
        **common("rec", "x/0/rec/0"),
        "messages": [
            {"role": "user", "content": "<image>Find <ref-object> in the image."},
            {"role": "assistant", "content": "<bbox>"},
        ],
        "images": ["x.jpg"],
        "objects": {"ref": ["the red car"], "bbox": [CAR], "bbox_type": "real"},
    }


def test_golden_reg():
    assert one("reg") == {
        **common("reg", "x/0/reg/0"),
        "messages": [
            {"role": "user", "content": "<image>Describe the region <bbox> in a few words."},
            {"role": "assistant", "content": "<ref-object>"},
        ],
        "images": ["x.jpg"],
        "objects": {"ref": ["the red car"], "bbox": [CAR], "bbox_type": "real"},
    }


def test_golden_grounded_caption():
    assert one("grounded-caption") == {
        **common("grounded-caption", "x/0/grounded-caption"),
        "messages": [
            {"role": "user", "content": "<image>Generate the caption in English with grounding:"},
            {"role": "assistant", "content": "A man stands next to <ref-object><bbox>."},
        ],
        "images": ["x.jpg"],
        "objects": {"ref": ["the red car"], "bbox": [CAR], "bbox_type": "real"},
    }


def test_several_boxes_repeat_bbox_after_one_ref():
    """Custom-dataset.md L311: one ref with two boxes is ``"<bbox><bbox>"`` (and two ``bbox`` entries)."""
    second = [400.0, 60.0, 500.0, 200.0]
    rec = one("rec", car([CAR, second]))
    assert rec["messages"][1]["content"] == "<bbox><bbox>"
    assert rec["objects"] == {"ref": ["the red car"], "bbox": [CAR, second], "bbox_type": "real"}
    reg = one("reg", car([CAR, second]))
    assert reg["messages"][0]["content"] == "<image>Describe the region <bbox><bbox> in a few words."
    caption = one("grounded-caption", car([CAR, second]))
    assert caption["messages"][1]["content"] == "A man stands next to <ref-object><bbox><bbox>."


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_writes_the_same_records_and_schema(target):
    """ms-swift spells the boxes, so the records do not depend on the model (only which models are allowed)."""
    writer = objects_writer(target)
    for task in ("rec", "reg", "grounded-caption"):
        (record,) = writer.render(car(), task, 0)
        assert record == one(task)
        assert list(record) == writer.schema().names
        assert writer.parse(record) == [Decoded("the red car", [CAR])]
    assert writer.name == target
    assert ("pointing" in writer.tasks) == (target == "qwen-vl")


def test_objects_column_is_ms_swifts_arrow_type():
    """swift/dataset/preprocessor/core.py L286-291 declares ``objects`` as ``{'ref': Sequence(Value('string')),
    'bbox': Sequence(Sequence(Value('float64'))), 'bbox_type': Value('string'), 'image_id': …}``."""
    schema = objects_writer().schema()
    assert schema.field("objects").type == pa.struct(
        [("ref", pa.list_(pa.string())), ("bbox", pa.list_(pa.list_(pa.float64()))), ("bbox_type", pa.string())]
    )
    assert schema.names == [
        "id", "sample_id", "task", "image", "width", "height", "messages", "images", "objects",
    ]  # fmt: skip


# --- ms-swift, re-implemented from the quoted lines of modelscope/ms-swift 3602360a5 ------------------------

# swift/template/base.py L56: special_tokens = ['<image>', '<video>', '<audio>', '<bbox>', '<ref-object>', ...]
UPSTREAM_TAGS = ("<image>", "<video>", "<audio>", "<bbox>", "<ref-object>", "<cot-process>", "<start-image>")


def swift_split(text: str) -> list[str]:
    """swift/template/base.py L937-954 ``_split_special_tokens`` → utils.py L137-165 ``split_str_parts_by``:
    the text cut at every special token, the tokens kept as their own contexts."""
    return [part for part in re.split("(" + "|".join(map(re.escape, UPSTREAM_TAGS)) + ")", text) if part]


def swift_normalize(objects: dict, width: int, height: int, norm: str, fed: tuple[int, int] = (0, 0)) -> list:
    """swift/template/base.py L299-319 ``normalize_bbox`` (``width``/``height``: the loaded image's, L290-297,
    taken before any ``max_pixels`` rescale, L420-435)::

        if self.norm_bbox == 'norm1000': norm_width, norm_height = 1000, 1000
        elif self.norm_bbox == 'none': norm_width, norm_height = image.width, image.height
        bbox[2 * i] = int(round(x / width * norm_width))
        bbox[2 * i + 1] = int(round(y / height * norm_height))
    """
    assert (objects.get("bbox_type") or "real") == "real"
    norm_width, norm_height = (1000, 1000) if norm == "norm1000" else fed
    out = []
    for bbox in objects["bbox"]:
        bbox = list(bbox)
        for i, (x, y) in enumerate(zip(bbox[::2], bbox[1::2], strict=True)):
            bbox[2 * i] = int(round(x / width * norm_width))
            bbox[2 * i + 1] = int(round(y / height * norm_height))
        out.append(bbox)
    return out


def bbox_str(bbox: list[int]) -> str:
    """swift/template/base.py L1015-1020 ``_get_bbox_str``: ``','.join(f'({x},{y})' ...)``."""
    return ",".join(f"({x},{y})" for x, y in zip(bbox[::2], bbox[1::2], strict=True))


# (replace_ref, replace_bbox, norm_bbox) of each template
SPELLINGS = {
    # swift/template/templates/qwen.py L369-380 (QWENVL_BBOX_FORMAT 'legacy', the default):
    #   return [f'<|object_ref_start|>{ref}<|object_ref_end|>']; [f'<|box_start|>{self._get_bbox_str(bbox)}<|box_end|>']
    "qwen2-vl": (
        lambda ref: f"<|object_ref_start|>{ref}<|object_ref_end|>",
        lambda bbox: f"<|box_start|>{bbox_str(bbox)}<|box_end|>",
        "norm1000",
    ),
    # qwen.py L526-528: class Qwen2_5VLTemplate(Qwen2VLTemplate): norm_bbox = 'none'
    "qwen2.5-vl": (
        lambda ref: f"<|object_ref_start|>{ref}<|object_ref_end|>",
        lambda bbox: f"<|box_start|>{bbox_str(bbox)}<|box_end|>",
        "none",
    ),
    # swift/template/templates/internvl.py L121-125: [f'<ref>{ref}</ref>']; [f'<box>[{bbox}]</box>']
    "internvl": (lambda ref: f"<ref>{ref}</ref>", lambda bbox: f"<box>[{bbox}]</box>", "norm1000"),
    # qwen.py L222-226 (Qwen-VL): [f'<ref>{ref}</ref>']; [f'<box>{self._get_bbox_str(bbox)}</box>']
    "qwen-vl": (lambda ref: f"<ref>{ref}</ref>", lambda bbox: f"<box>{bbox_str(bbox)}</box>", "norm1000"),
    # base.py L989-1001 / L1022-1034 (every other template): [ref]; [f'[{self._get_bbox_str(bbox)}]']
    "default": (lambda ref: ref, lambda bbox: f"[{bbox_str(bbox)}]", "norm1000"),
    # swift/template/templates/microsoft.py L30-31 (Florence-2): [''.join(f'<loc_{box}>' for box in bbox)]
    "florence-2": (lambda ref: ref, lambda bbox: "".join(f"<loc_{box}>" for box in bbox), "norm1000"),
}


def swift_render(record: dict, model: str, fed: tuple[int, int] = (0, 0)) -> tuple[str, str]:
    """(user, assistant) as ms-swift hands them to the tokenizer, ``<image>`` left as it is.

    swift/template/base.py L1055-1102 ``_pre_tokenize``: after ``normalize_bbox``, over the contexts of the
    whole conversation in order, ``if context == '<ref-object>' and inputs.ref_idx < len(ref): c_list =
    self.replace_ref(ref[idx], idx, inputs); inputs.ref_idx += 1`` and likewise ``<bbox>``/``bbox_idx``
    (indices from StdTemplateInputs.__post_init__, template_inputs.py L78-79); anything else stays.
    """
    replace_ref, replace_bbox, norm = SPELLINGS[model]
    refs = record["objects"]["ref"]
    boxes = swift_normalize(record["objects"], record["width"], record["height"], norm, fed)
    ref_idx = bbox_idx = 0
    out = []
    for message in record["messages"]:
        parts = []
        for context in swift_split(message["content"]):
            if context == "<ref-object>" and ref_idx < len(refs):
                parts.append(replace_ref(refs[ref_idx]))
                ref_idx += 1
            elif context == "<bbox>" and bbox_idx < len(boxes):
                parts.append(replace_bbox(boxes[bbox_idx]))
                bbox_idx += 1
            else:
                parts.append(context)
        out.append("".join(parts))
    assert (ref_idx, bbox_idx) == (len(refs), len(boxes))  # every entry used: nothing left literal
    return out[0], out[1]


def test_upstream_tags_are_ours():
    assert SWIFT_TAGS == UPSTREAM_TAGS


def test_conformance_qwen2_vl_worked_example():
    """FORMATS_NEXT §8: ``"objects": {"ref": ["the red car"], "bbox": [[100, 50, 300, 390]]}`` renders as
    ``<|box_start|>(156,104),(469,812)<|box_end|>`` for Qwen2/3-VL (812.5 → 812, half-to-even)."""
    user, reply = swift_render(one("rec"), "qwen2-vl")
    assert user == "<image>Find <|object_ref_start|>the red car<|object_ref_end|> in the image."
    assert reply == "<|box_start|>(156,104),(469,812)<|box_end|>"
    _, caption = swift_render(one("grounded-caption"), "qwen2-vl")
    assert caption == (
        "A man stands next to <|object_ref_start|>the red car<|object_ref_end|>"
        "<|box_start|>(156,104),(469,812)<|box_end|>."
    )
    # exactly what our native qwen2-vl writer trains on for the same caption
    (native,) = get_writer("qwen2-vl").from_mapping({}).render(car(), "grounded-caption", 0)
    assert caption == native["conversations"][1]["value"]
    user, reply = swift_render(one("reg"), "qwen2-vl")
    assert user == "<image>Describe the region <|box_start|>(156,104),(469,812)<|box_end|> in a few words."
    assert reply == "<|object_ref_start|>the red car<|object_ref_end|>"


def test_conformance_internvl_worked_example():
    _, reply = swift_render(one("rec", target="internvl"), "internvl")
    assert reply == "<box>[[156, 104, 469, 812]]</box>"
    _, caption = swift_render(one("grounded-caption", target="internvl"), "internvl")
    assert caption == "A man stands next to <ref>the red car</ref><box>[[156, 104, 469, 812]]</box>."
    (native,) = get_writer("internvl").from_mapping({}).render(car(), "grounded-caption", 0)
    assert caption == native["conversations"][1]["value"]


def test_conformance_other_templates_worked_example():
    """FORMATS_NEXT §8's other renderings: Qwen2.5-VL in pixels of the image ms-swift fed (644×476 for 640×480,
    FORMATS_NEXT §2: ``[101, 50, 302, 387]``), Qwen-VL rounded, Florence-2 rounded, the default list."""
    record = one("rec")
    assert swift_render(record, "qwen2.5-vl", fed=(644, 476))[1] == "<|box_start|>(101,50),(302,387)<|box_end|>"
    (native,) = (
        get_writer("qwen2.5-vl").from_mapping({"resize_profile": "hf", "box_format": "tokens"}).render(car(), "rec", 0)
    )
    assert native["conversations"][1]["value"].endswith("<|box_start|>(101,50),(302,387)<|box_end|>")
    assert swift_render(record, "qwen-vl")[1] == "<box>(156,104),(469,812)</box>"
    assert swift_render(record, "florence-2")[1] == "<loc_156><loc_104><loc_469><loc_812>"
    assert swift_render(record, "default")[1] == "[(156,104),(469,812)]"


def flickr_samples(flickr_excerpt: Path) -> list[Sample]:
    reader = get_reader("flickr30k-entities").from_mapping({})
    return [s for p in reader.plan(str(flickr_excerpt)) for s in reader.read(p) if isinstance(s, Sample)]


def test_conformance_on_the_flickr_excerpt_matches_our_native_writers(flickr_excerpt):
    """Every record of the excerpt, filled as ms-swift fills it, is the text our native writer writes: the
    whole grounded caption for Qwen2-VL; the boxes of every phrase for Qwen2-VL and InternVL."""
    swift = objects_writer("qwen2-vl")
    qwen2, internvl = get_writer("qwen2-vl").from_mapping({}), get_writer("internvl").from_mapping({})
    numbers = re.compile(r"(\d+), (\d+), (\d+), (\d+)")
    captions = boxes = 0
    for sample in flickr_samples(flickr_excerpt):
        for record, native in zip(
            swift.render(sample, "grounded-caption", 0), qwen2.render(sample, "grounded-caption", 0), strict=True
        ):
            assert swift_render(record, "qwen2-vl")[1] == native["conversations"][1]["value"]
            captions += 1
        for record, native, intern in zip(
            swift.render(sample, "rec", 0),
            qwen2.render(sample, "rec", 0),
            internvl.render(sample, "rec", 0),
            strict=True,
        ):
            user, reply = swift_render(record, "qwen2-vl")
            tagged = f"<|object_ref_start|>{record['objects']['ref'][0]}<|object_ref_end|>"
            assert tagged in user and native["conversations"][1]["value"] == tagged + reply
            spelled = numbers.findall(swift_render(record, "internvl")[1])  # one <box>[[…]]</box> per box
            assert spelled == numbers.findall(intern["conversations"][1]["value"])  # one list of all boxes
            boxes += len(spelled)
    assert captions > 900 and boxes > 4000


# --- the real excerpt through the command line -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "json"])
def test_flickr_excerpt_convert_and_validate(flickr_excerpt, tmp_path, fmt):
    out = tmp_path / "out"
    args = ["convert", "-f", "flickr30k-entities", "-t", "qwen2-vl", "--layout", "ms-swift-objects"]
    result = runner.invoke(app, [*args, "--format", fmt, "-i", str(flickr_excerpt), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    checked = runner.invoke(app, ["validate", str(out), "--source", str(flickr_excerpt)])
    assert checked.exit_code == 0, checked.output
    assert "worst error 0.000px" in checked.output and "valid" in checked.output
    report = validate(str(out), str(flickr_excerpt))
    assert report.ok and report.worst_pixels == 0.0 and report.boxes_checked > 13000
    (shard,) = (out / "data").iterdir()
    if fmt == "parquet":
        table = pq.read_table(shard)
        assert table.schema.field("objects").type == objects_writer().schema().field("objects").type
        first = table.slice(0, 1).to_pylist()[0]
    elif fmt == "jsonl":
        first = orjson.loads(shard.read_bytes().splitlines()[0])
    else:
        first = orjson.loads(shard.read_bytes())[0]
    assert first["messages"][0]["content"].startswith("<image>") and first["images"] == [first["image"]]
    assert first["objects"]["bbox_type"] == "real"


def test_flickr_excerpt_as_a_real_process(flickr_excerpt, tmp_path):
    out = tmp_path / "out"
    convert_args = [BIN, "convert", "-f", "flickr30k-entities", "-t", "internvl", "--layout", "ms-swift-objects",
                    "--format", "jsonl", "-i", str(flickr_excerpt), "-o", str(out), "--quiet"]  # fmt: skip
    proc = subprocess.run(convert_args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [BIN, "validate", str(out), "--source", str(flickr_excerpt)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checked 6,994 records" in proc.stdout and "worst error 0.000px" in proc.stdout


def test_records_reader_gets_the_caption_back(flickr_excerpt, tmp_path):
    """``--from records`` fills each ``<ref-object>`` back in: text, spans and boxes as the source had them."""
    args = [
        "convert",
        "-f",
        "flickr30k-entities",
        "-t",
        "qwen2-vl",
        "--layout",
        "ms-swift-objects",
        "--format",
        "jsonl",
    ]
    runner.invoke(app, [*args, "-i", str(flickr_excerpt), "-o", str(tmp_path / "a"), "--quiet"])
    job = make_job(input=str(tmp_path / "a"), output=str(tmp_path / "b"), writer="canonical", reader="records",
                   format="jsonl")  # fmt: skip
    assert convert(job, RunOptions(progress=False)).tally.rejected == 0
    source = {s.id: s for s in flickr_samples(flickr_excerpt)}
    (shard,) = (tmp_path / "b" / "data").iterdir()
    rebuilt = [orjson.loads(line) for line in shard.read_bytes().splitlines()]
    assert len(rebuilt) > 900
    for sample in rebuilt:
        want = source[sample["id"]]
        assert sample["text"] == want.text
        spans = [(tuple(r["span"]), r["boxes"]) for r in sample["regions"] if r["span"]]
        assert spans == [(r.span, r.boxes) for r in want.regions if r.span is not None and r.boxes]


def test_pointing_and_other_datasets_validate(tmp_path):
    """Visual7W pointing (qwen-vl's one extra task), RefCOCO and GRIT, synthetic native inputs."""
    for dataset, inner, reader_options in (
        ("visual7w", ".", {"image_root": "images"}),
        ("refcoco", "refcoco", {}),
        ("grit", ".", {}),
    ):
        root = tmp_path / dataset
        generate(dataset, root, images=6, seed=11)
        options = {k: str(root / v) for k, v in reader_options.items()}
        job = make_job(input=str(root / inner), output=str(tmp_path / f"{dataset}-out"), writer="qwen-vl",
                       reader=dataset, reader_options=options, writer_options={"layout": "ms-swift-objects"},
                       format="parquet")  # fmt: skip
        tally = convert(job, RunOptions(progress=False)).tally
        assert tally.balanced and tally.written > 0 and tally.rejected == 0
        if dataset == "visual7w":
            assert sum(c.get("pointing", 0) for c in tally.records.values()) > 0
        report = validate(str(tmp_path / f"{dataset}-out"), str(root / inner), dataset, options)
        assert report.ok and report.worst_pixels == 0.0, report.messages


def test_pointing_record():
    sample = Sample(
        id="v/1", dataset="visual7w", split="train", image=ImageRef(file="v.jpg", width=640, height=480),
        text="Which is the red car?",
        regions=[Region("a bus", None, [[0.0, 0.0, 50.0, 50.0]], role="choice"),
                 Region("the red car", None, [CAR], role="answer")],
    )  # fmt: skip
    writer = objects_writer("qwen-vl")
    (record,) = writer.render(sample, "pointing", 0)
    user, reply = (m["content"] for m in record["messages"])
    assert user.startswith("<image>Which is the red car? ") and user.count("<bbox>") == 2
    assert reply == "<ref-object><bbox>"
    assert record["objects"] == {"ref": ["the red car"], "bbox": [[0.0, 0.0, 50.0, 50.0], CAR, CAR],
                                 "bbox_type": "real"}  # fmt: skip
    decoded = writer.parse(record)
    assert [(d.phrase, d.boxes, d.role) for d in decoded] == [
        (None, [[0.0, 0.0, 50.0, 50.0]], "choice"), ("the red car", [CAR], "answer"),
    ]  # fmt: skip


# --- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "sample", "tag"),
    [
        ("rec", car(phrase="the <ref-object> car"), "<ref-object>"),
        ("reg", car(phrase="a <bbox>"), "<bbox>"),
        ("rec", car(phrase="<image> car"), "<image>"),
        ("grounded-caption", car(text="A man <bbox> next to the red car.", span=(26, 37)), "<bbox>"),
        ("grounded-caption", car(text="A <video> stands next to the red car.", span=(25, 36)), "<video>"),
        ("rec", car(phrase="the <|box_start|> car"), "<|box_start|>"),  # ms-swift wraps it in Qwen2-VL tokens
    ],
)
def test_text_holding_a_placeholder_is_refused(task, sample, tag):
    with pytest.raises(RecordError, match=re.escape(tag)) as caught:
        objects_writer().render(sample, task, 0)
    assert caught.value.reason == "render-failed"


def test_model_markup_is_refused_for_that_model():
    with pytest.raises(RecordError, match="internvl markup"):
        objects_writer("internvl").render(car(phrase="the <ref> car"), "rec", 0)
    assert objects_writer("qwen2-vl").render(car(phrase="the <ref> car"), "rec", 0)  # not Qwen2-VL markup


def test_collisions_are_counted_rejects_not_mangled(tmp_path):
    good, bad = car(), car(phrase="the <bbox> car")
    bad.id = "x/1"
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps(s.to_record()) + b"\n" for s in (good, bad)))
    job = make_job(input=str(source), output=str(tmp_path / "out"), writer="qwen2-vl", reader="canonical",
                   writer_options={"layout": "ms-swift-objects"}, format="jsonl")  # fmt: skip
    tally = convert(job, RunOptions(progress=False)).tally
    assert tally.rejected == 1 and tally.written == 1 and tally.balanced
    assert tally.reject_reasons["render-failed"] == 1
    (shard,) = (tmp_path / "out" / "data").iterdir()
    assert b"the <bbox> car" not in shard.read_bytes()


def bad(record: dict, **changes) -> dict:
    out = orjson.loads(orjson.dumps(record))
    for key, value in changes.items():
        if key == "reply":
            out["messages"][1]["content"] = value
        elif key == "user":
            out["messages"][0]["content"] = value
        else:
            out["objects"][key] = value
    return out


@pytest.mark.parametrize(
    ("task", "changes", "reason", "words"),
    [
        ("rec", {"reply": "<bbox><bbox>"}, "bad-record", "2 <bbox>"),
        ("rec", {"bbox": [CAR, CAR]}, "bad-record", "2 bbox(es)"),
        ("rec", {"ref": []}, "bad-record", "0 ref(s)"),
        ("reg", {"ref": ["the red car", "a dog"]}, "bad-record", "2 ref(s)"),
        ("grounded-caption", {"reply": "A man stands next to <ref-object>."}, "bad-record", "0 <bbox>"),
        ("grounded-caption", {"reply": "A man <ref-object> next to <ref-object><bbox>."}, "bad-record", "2 <ref"),
        ("rec", {"user": "Find <ref-object>."}, "bad-record", "<image>"),
        ("rec", {"bbox_type": "norm1"}, "bad-record", "norm1"),
        ("rec", {"bbox": [[100.0, 50.0]]}, "bad-box", "four finite numbers"),
        ("rec", {"bbox": [[300.0, 50.0, 100.0, 390.0]]}, "bad-box", "wrong way round"),
        ("rec", {"image_id": [1]}, "bad-record", "image_id"),
    ],
)
def test_placeholders_that_do_not_match_objects_are_record_errors(task, changes, reason, words):
    writer = objects_writer()
    with pytest.raises(RecordError, match=re.escape(words)) as caught:
        writer.parse(bad(one(task), **changes))
    assert caught.value.reason == reason


def test_missing_objects_is_a_record_error():
    record = one("rec")
    del record["objects"]
    with pytest.raises(RecordError) as caught:
        objects_writer().parse(record)
    assert caught.value.reason == "missing-key"


def test_validate_reports_a_tampered_record(flickr_excerpt, tmp_path):
    out = tmp_path / "out"
    args = ["convert", "-f", "flickr30k-entities", "-t", "qwen3-vl", "--layout", "ms-swift-objects", "--limit", "20"]
    runner.invoke(app, [*args, "--format", "jsonl", "-i", str(flickr_excerpt), "-o", str(out), "--quiet"])
    (shard,) = (out / "data").iterdir()
    lines = shard.read_bytes().splitlines()
    first = orjson.loads(lines[0])
    first["messages"][1]["content"] += "<bbox>"
    shard.write_bytes(b"\n".join([orjson.dumps(first), *lines[1:]]) + b"\n")
    result = runner.invoke(app, ["validate", str(out), "--source", str(flickr_excerpt)])
    assert result.exit_code != 0
    assert "bad-record" in result.output and "INVALID: 1 problem(s)" in result.output


def test_models_ms_swift_does_not_spell_are_refused():
    with pytest.raises(UsageError, match=r"\[\(x1,y1\),\(x2,y2\)\].*--layout ms-swift\b"):
        get_writer("cogvlm").from_mapping({"layout": "ms-swift-objects"})


@pytest.mark.parametrize(
    ("writer", "options"),
    [
        ("qwen2.5-vl", {"resize_profile": "hf"}),
        ("qwen2.5-vl", {"min_pixels": "3136", "max_pixels": "12845056"}),
        ("qwen3-vl", {"box_format": "json"}),
        ("qwen3-vl", {"max_coord": "999"}),
    ],
)
def test_the_writers_own_box_options_are_refused(writer, options):
    with pytest.raises(UsageError, match="does not apply with --layout ms-swift-objects"):
        get_writer(writer).from_mapping({"layout": "ms-swift-objects", **options})


def test_qwen25_vl_needs_no_resize_setting_here():
    """ms-swift resizes (MAX_PIXELS) and spells Qwen2.5-VL's pixels itself: the record is the same."""
    assert objects_writer("qwen2.5-vl").render(car(), "rec", 0) == [one("rec")]


def test_cli_refusals_exit_2(flickr_excerpt, tmp_path):
    base = ["convert", "-f", "flickr30k-entities", "-i", str(flickr_excerpt), "-o", str(tmp_path / "o"), "--quiet"]
    for extra, words in (
        (["-t", "cogvlm"], "ms-swift spells cogvlm boxes"),
        (["-t", "qwen2.5-vl", "--resize-profile", "hf"], "--resize-profile does not apply"),
        (["-t", "florence-2"], "--layout does not apply"),
    ):
        result = runner.invoke(app, [*base, *extra, "--layout", "ms-swift-objects"])
        assert result.exit_code == 2 and words in result.output, result.output
        assert not (tmp_path / "o" / "data").exists()


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("rec: ['Find <ref-object>']", "holds '<ref-object>'"),
        ("rec: ['Find it']", "needs {phrase}"),
        ("rec: ['Find {phrase} and {phrase}']", "needs {phrase}"),
        ("rec: ['Find {phrase} <bbox>']", "holds '<bbox>'"),
        ("reg: ['What is {phrase}?']", "not usable"),
    ],
)
def test_templates_are_checked_when_the_writer_is_built(tmp_path, template, words):
    path = tmp_path / "t.yaml"
    path.write_text(template)
    with pytest.raises(UsageError, match=re.escape(words)):
        objects_writer(template_file=str(path))


# --- property: any size, any boxes → record → parse gives them back exactly -----------------------------


@st.composite
def samples(draw):
    w, h = draw(st.integers(1, 5000)), draw(st.integers(1, 5000))
    boxes = []
    for _ in range(draw(st.integers(1, 4))):
        x1, x2 = sorted(draw(st.lists(st.floats(0, w, allow_nan=False), min_size=2, max_size=2, unique=True)))
        y1, y2 = sorted(draw(st.lists(st.floats(0, h, allow_nan=False), min_size=2, max_size=2, unique=True)))
        boxes.append([x1, y1, x2, y2])
    pieces = st.sampled_from(
        ["a", "car", " ", "<", ">", "|", "-", "<bbox>", "<ref>", "<ref-object>", "bbox>", "<ref-obj"]
    )
    phrase = "".join(draw(st.lists(pieces, min_size=1, max_size=6)))
    if not phrase.strip():
        phrase = "car"
    head, tail = draw(st.sampled_from(["", "A ", "x <b "])), draw(st.sampled_from(["", ".", " bbox>"]))
    text = head + phrase + tail
    return Sample(
        id="s/0", dataset="d", split="train", image=ImageRef(file="x.jpg", width=w, height=h), text=text,
        regions=[Region(phrase, (len(head), len(head) + len(phrase)), boxes)],
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(samples(), st.sampled_from(TARGETS))
def test_write_parse_is_exact(sample, target):
    writer = objects_writer(target)
    for task in ("rec", "reg", "grounded-caption"):
        try:
            (record,) = writer.render(sample, task, 0)
        except RecordError as exc:  # only ever a tag or markup the text holds, never a box
            assert exc.reason == "render-failed"
            reserved = SWIFT_TAGS + SWIFT_TEMPLATES[target][0]
            assert any(t in sample.text for t in reserved)
            continue
        # through JSON (orjson) and through Arrow (Parquet's types) and back
        via_json = orjson.loads(orjson.dumps(record))
        via_arrow = pa.Table.from_pylist([record], schema=writer.schema()).to_pylist()[0]
        for copy in (record, via_json, via_arrow):
            decoded = writer.parse(copy)
            assert [(d.phrase, d.boxes) for d in decoded] == [(sample.regions[0].phrase, sample.regions[0].boxes)]
        if task == "grounded-caption":
            text, entities = writer.caption_entities(via_json)
            assert text == sample.text and entities == [sample.regions[0].span]


def test_no_placeholder_is_made_across_the_two_messages():
    record = bad(one("rec"), user="<image>Find <ref-object> <bb", reply="ox>")
    record["objects"]["bbox"] = []
    with pytest.raises(RecordError, match="a rec record has one ref and its boxes"):
        objects_writer().parse(record)


@pytest.mark.parametrize(
    "layout, says",
    [
        ("ms-swift-objects", "written unrounded into ms-swift's `objects` column"),
        ("llamafactory", "spelled as `qwen2-vl` does, in LLaMA-Factory's sharegpt layout"),
        ("native", "spelled as `qwen2-vl` does;"),
    ],
)
def test_dataset_card_says_how_the_boxes_were_written(flickr_excerpt, tmp_path, layout, says):
    out = tmp_path / layout
    job = make_job(
        input=str(flickr_excerpt), output=str(out), writer="qwen2-vl", reader="flickr30k-entities", format="jsonl",
        writer_options={"layout": layout}, limit=5,
    )  # fmt: skip
    convert(job, RunOptions(progress=False))
    assert says in (out / "README.md").read_text()
