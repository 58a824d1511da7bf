"""FORMATS_NEXT.md's worked example, byte for byte, for every new writer (W=640, H=480, box [100,50,300,390],
"the red car"; 812.5 is an exact tie that half-to-even rounds to 812)."""

from __future__ import annotations

import orjson
import pytest

from grounding_convert.errors import RecordError, UsageError
from grounding_convert.layouts import dataset_info
from grounding_convert.plugins import get_writer
from grounding_convert.schema import ImageRef, Region, Sample

CAPTION = "A man stands next to the red car."
CAR = [100.0, 50.0, 300.0, 390.0]


def car(box=CAR, category=None) -> Sample:
    return Sample(
        id="x/0",
        dataset="d",
        split="train",
        image=ImageRef(file="x.jpg", width=640, height=480),
        text=CAPTION,
        regions=[Region("the red car", (21, 32), [list(box)], category=category)],
    )


def one(writer: str, task: str, sample: Sample | None = None, **options) -> dict:
    (record,) = get_writer(writer).from_mapping(options).render(sample or car(), task, 0)
    return record


def reply(record: dict) -> str:
    return record["conversations"][1]["value"]


def test_the_tie_is_exact():
    assert 390 / 480 * 1000 == 812.5 and round(812.5) == 812


def test_qwen2_vl():
    record = one("qwen2-vl", "rec")
    assert reply(record) == (
        "<|object_ref_start|>the red car<|object_ref_end|><|box_start|>(156,104),(469,812)<|box_end|>"
    )
    assert record["conversations"][0]["value"].startswith("<image>\n")
    assert reply(one("qwen2-vl", "rec", car([0, 0, 640, 480]))).endswith("(0,0),(1000,1000)<|box_end|>")
    assert reply(one("qwen2-vl", "grounded-caption")) == (
        "A man stands next to <|object_ref_start|>the red car<|object_ref_end|>"
        "<|box_start|>(156,104),(469,812)<|box_end|>."
    )


@pytest.mark.parametrize(
    ("options", "size", "box"),
    [
        ({"resize_profile": "hf"}, (644, 476), "[101, 50, 302, 387]"),
        ({"resize_profile": "qwen-finetune"}, (644, 476), "[101, 50, 302, 387]"),
        ({"resize_profile": "llamafactory"}, (644, 476), "[101, 50, 302, 387]"),
        ({"min_pixels": 3136, "max_pixels": 200704}, (504, 364), "[79, 38, 236, 296]"),
        ({"resize_profile": "qwen-sft-script"}, (252, 168), "[39, 18, 118, 136]"),  # 17.5, 136.5: ties to even
        ({"min_pixels": 784, "max_pixels": 50176}, (252, 168), "[39, 18, 118, 136]"),
    ],
)
def test_qwen25_vl_both_resize_settings(options, size, box):
    record = one("qwen2.5-vl", "rec", **options)
    assert (record["resized_width"], record["resized_height"]) == size
    assert reply(record) == f'```json\n[\n\t{{"bbox_2d": {box}, "label": "the red car"}}\n]\n```'


def test_qwen25_vl_full_image_clamps_to_the_last_pixel():
    record = one("qwen2.5-vl", "rec", car([0, 0, 640, 480]), resize_profile="hf", json_fence="false")
    assert reply(record) == '[\n\t{"bbox_2d": [0, 0, 643, 475], "label": "the red car"}\n]'


def test_qwen25_vl_tokens_and_every_record_has_the_resized_size():
    writer = get_writer("qwen2.5-vl").from_mapping({"resize_profile": "hf", "box_format": "tokens"})
    for task in writer.tasks:
        for record in writer.render(car(), task, 0):
            assert (record["resized_width"], record["resized_height"]) == (644, 476)
    assert reply(writer.render(car(), "rec", 0)[0]).endswith("<|box_start|>(101,50),(302,387)<|box_end|>")


@pytest.mark.parametrize(
    "options",
    [{}, {"factor": 28}, {"min_pixels": 10}, {"resize_profile": "nope"}, {"resize_profile": "hf", "max_pixels": 9}],
)
def test_qwen25_vl_refuses_to_guess_the_resize(options):
    with pytest.raises(UsageError) as info:
        get_writer("qwen2.5-vl").from_mapping(options)
    assert info.value.exit_code == 2


def test_qwen25_vl_refusal_lists_the_profiles():
    with pytest.raises(UsageError, match="hf,qwen-finetune,qwen-sft-script,ms-swift,llamafactory"):
        get_writer("qwen2.5-vl").from_mapping({})


def test_qwen3_vl():
    body = '[\n\t{"bbox_2d": [156, 104, 469, 812], "label": "the red car"}\n]'
    assert reply(one("qwen3-vl", "rec", json_fence="false")) == body
    assert reply(one("qwen3-vl", "rec", json_fence="false", max_coord="999")) == body
    assert reply(one("qwen3-vl", "rec")) == f"```json\n{body}\n```"
    full = car([0, 0, 640, 480])
    assert '"bbox_2d": [0, 0, 1000, 1000]' in reply(one("qwen3-vl", "rec", full))
    assert '"bbox_2d": [0, 0, 999, 999]' in reply(one("qwen3-vl", "rec", full, max_coord="999"))


def test_internvl_record_as_formats_next():
    record = one("internvl", "rec")
    assert record["conversations"] == [
        {
            "from": "human",
            "value": "<image>\nPlease provide the bounding box coordinate of the region this sentence describes: "
            "<ref>the red car</ref>",
        },
        {"from": "gpt", "value": "<ref>the red car</ref><box>[[156, 104, 469, 812]]</box>"},
    ]
    assert (record["image"], record["width"], record["height"]) == ("x.jpg", 640, 480)
    two = car()
    two.regions[0].boxes.append([400.0, 60.0, 500.0, 200.0])
    assert reply(one("internvl", "rec", two)).endswith("<box>[[156, 104, 469, 812], [625, 125, 781, 417]]</box>")


def test_florence2():
    record = one("florence-2", "rec")
    assert (record["prefix"], record["suffix"]) == (
        "<OPEN_VOCABULARY_DETECTION>the red car",
        "the red car<loc_156><loc_104><loc_468><loc_812>",
    )
    writer = get_writer("florence-2").from_mapping({})
    assert writer.parse(record)[0].boxes == [[100.16, 50.16, 299.84, 390.0]]
    caption = one("florence-2", "grounded-caption")
    assert caption["prefix"] == "<CAPTION_TO_PHRASE_GROUNDING>A man stands next to the red car."
    assert caption["suffix"] == "the red car<loc_156><loc_104><loc_468><loc_812>"
    assert one("florence-2", "reg")["prefix"] == "<REGION_TO_DESCRIPTION><loc_156><loc_104><loc_468><loc_812>"
    assert one("florence-2", "rec", car([0, 0, 640, 480]))["suffix"].endswith("<loc_0><loc_0><loc_999><loc_999>")


def test_paligemma_y_first():
    record = one("paligemma", "rec")
    assert (record["prefix"], record["suffix"]) == (
        "detect the red car",
        "<loc0107><loc0160><loc0831><loc0480> the red car",
    )
    full = one("paligemma", "rec", car([0, 0, 640, 480]))
    assert full["suffix"] == "<loc0000><loc0000><loc1023><loc1023> the red car"
    two = car()
    two.regions[0].boxes.append([400.0, 60.0, 500.0, 200.0])
    assert one("paligemma", "rec", two)["suffix"] == (
        "<loc0107><loc0160><loc0831><loc0480> the red car ; <loc0128><loc0639><loc0426><loc0799> the red car"
    )


def test_odvg_grounding_and_detection(tmp_path):
    record = one("odvg", "grounded-caption")
    doc = {k: record[k] for k in ("filename", "height", "width", "grounding")}
    assert (
        orjson.dumps(doc).decode()
        == orjson.dumps(
            {
                "filename": "x.jpg",
                "height": 480,
                "width": 640,
                "grounding": {
                    "caption": CAPTION,
                    "regions": [
                        {"bbox": [[100.0, 50.0, 300.0, 390.0]], "phrase": "the red car", "tokens_positive": [[21, 32]]}
                    ],
                },
            }
        ).decode()
    )
    ogd = one("odvg", "grounded-caption", odvg_dialect="open-groundingdino")
    assert ogd["grounding"]["regions"] == [{"bbox": CAR, "phrase": "the red car", "tokens_positive": [[21, 32]]}]
    labels = tmp_path / "labels.json"
    labels.write_text('{"0": "car"}')
    writer = get_writer("odvg").from_mapping({"label_map": str(labels)})
    (det,) = writer.render(car(category="car"), "detection", 0)
    assert det["detection"] == {"instances": [{"bbox": CAR, "label": 0, "category": "car"}]}
    assert writer.companion_files([], {}) == {"label_map.json": b'{"0":"car"}'}
    with pytest.raises(RecordError, match="label map"):
        get_writer("odvg").from_mapping({}).render(car(category="car"), "detection", 0)


def test_layouts_llamafactory_and_ms_swift():
    for layout in ("llamafactory", "ms-swift"):
        writer = get_writer("qwen2-vl").from_mapping({"layout": layout})
        (record,) = writer.render(car(), "rec", 0)
        assert record["images"] == ["x.jpg"]
        user, assistant = record["messages"]
        assert (
            user["role"] == "user" and user["content"].startswith("<image>") and user["content"].count("<image>") == 1
        )
        assert assistant == {
            "role": "assistant",
            "content": "<|object_ref_start|>the red car<|object_ref_end|><|box_start|>(156,104),(469,812)<|box_end|>",
        }
        assert list(record) == writer.schema().names
        assert writer.parse(record)[0].boxes == [[99.84, 49.92, 300.16, 389.76]]
    packed = get_writer("qwen2.5-vl").from_mapping({"layout": "llamafactory", "resize_profile": "hf"})
    assert packed.render(car(), "rec", 0)[0]["resized_width"] == 644
    bad = car()
    bad.regions[0].phrase = "the <image> car"
    with pytest.raises(RecordError):
        get_writer("qwen-vl").from_mapping({"layout": "llamafactory"}).render(bad, "rec", 0)


def test_layout_refused_for_writers_without_conversations():
    with pytest.raises(UsageError):
        get_writer("florence-2").from_mapping({"layout": "llamafactory"})


def test_dataset_info_entry():
    shards = [{"split": "train", "file": "data/train-00000-of-00001.jsonl", "records": 3}]
    assert dataset_info(shards, {"reader": "flickr30k-entities", "writer": "qwen2.5-vl"}) == {
        "flickr30k_entities_qwen25_vl_train": {
            "file_name": "data/train-00000-of-00001.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        }
    }


@pytest.mark.parametrize("writer", ["qwen2-vl", "internvl", "florence-2", "paligemma"])
def test_markup_in_text_is_refused(writer):
    markup = {"qwen2-vl": "<|box_start|>", "internvl": "<ref>", "florence-2": "<loc_1>", "paligemma": "<loc0001>"}
    bad = car()
    bad.regions[0].phrase = f"the {markup[writer]} car"
    with pytest.raises(RecordError):
        get_writer(writer).from_mapping({}).render(bad, "rec", 0)
