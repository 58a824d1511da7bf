"""The new writers against installed upstream code (no network): transformers' Florence-2 quantizer and
PaliGemmaProcessor, supervision's VLM parsers.  (smart_resize: tests/test_resize.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from supervision.detection.vlm import from_florence_2, from_paligemma, from_qwen_2_5_vl, from_qwen_3_vl
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PaliGemmaProcessor, PreTrainedTokenizerFast
from transformers.models.florence2.processing_florence2 import Florence2PostProcessor
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from grounding_convert.plugins import get_writer
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.writers.florence2 import QUANTIZER as FLORENCE


@st.composite
def sized_box(draw):
    """An image of 1..5000 px per side and a box inside it at least 2 px wide (before quantizing)."""
    w, h = draw(st.integers(8, 5000)), draw(st.integers(8, 5000))
    x1 = draw(st.floats(0, w - 2, allow_nan=False))
    y1 = draw(st.floats(0, h - 2, allow_nan=False))
    x2 = draw(st.floats(x1 + 1, w, allow_nan=False))
    y2 = draw(st.floats(y1 + 1, h, allow_nan=False))
    return w, h, [x1, y1, x2, y2]


def sample(w: int, h: int, box: list[float], phrase: str = "red car") -> Sample:
    return Sample(
        id="s/0", dataset="d", split="train", image=ImageRef(file="x.jpg", width=w, height=h),
        text=phrase, regions=[Region(phrase, (0, len(phrase)), [box])],
    )  # fmt: skip


def florence_post_processor() -> Florence2PostProcessor:
    """The real class; its quantize/dequantize use only ``quantize_bins`` (no tokenizer or config needed)."""
    processor = Florence2PostProcessor.__new__(Florence2PostProcessor)
    processor.quantize_bins = (1000, 1000)
    return processor


@settings(max_examples=300, deadline=None)
@given(sized_box())
def test_florence2_bins_equal_transformers_quantizer(case):
    w, h, box = case
    theirs = florence_post_processor().quantize(torch.tensor([box]), (w, h))[0].tolist()
    assert FLORENCE.encode_box(box, w, h) == [int(v) for v in theirs]


def test_florence2_decode_equals_transformers_dequantize():
    """Both decode to the bin centre; transformers then truncates to whole pixels (``.int()``)."""
    q = [156, 104, 468, 812]
    theirs = florence_post_processor().dequantize(torch.tensor([q]), (640, 480))[0].tolist()
    ours = FLORENCE.decode_box(q, 640, 480)
    assert ours == pytest.approx([100.16, 50.16, 299.84, 390.0])
    assert [int(v) for v in ours] == theirs == [100, 50, 299, 390]


def within_one_step(decoded, box, step_x, step_y):
    """Per axis within one step, plus float32 rounding of the coordinate itself (supervision's Florence-2
    path computes in float32, and the far-edge bin 999 starts exactly one step before the border)."""
    for i, step in enumerate((step_x, step_y, step_x, step_y)):
        assert abs(decoded[i] - box[i]) <= step + 1e-6 * max(abs(decoded[i]), abs(box[i]), 1.0), (i, decoded, box)


@settings(max_examples=150, deadline=None)
@given(sized_box(), st.sampled_from(["hf", "qwen-sft-script"]))
def test_qwen25_vl_decodes_through_supervision(case, profile):
    w, h, box = case
    writer = get_writer("qwen2.5-vl").from_mapping({"resize_profile": profile})
    try:
        (record,) = writer.render(sample(w, h, box), "rec", 0)
    except Exception:  # aspect ratio > 200 or a box the resized grid collapses: refused, not written
        return
    answer = record["conversations"][1]["value"]
    xyxy, _, names = from_qwen_2_5_vl(answer, (record["resized_width"], record["resized_height"]), (w, h))
    assert list(names) == ["red car"]
    within_one_step(xyxy[0].tolist(), box, *writer.tolerance(w, h))


@settings(max_examples=150, deadline=None)
@given(sized_box())
def test_qwen3_vl_decodes_through_supervision(case):
    w, h, box = case
    writer = get_writer("qwen3-vl").from_mapping({})
    try:
        (record,) = writer.render(sample(w, h, box), "rec", 0)
    except Exception:
        return
    xyxy, _, _ = from_qwen_3_vl(record["conversations"][1]["value"], (w, h))
    within_one_step(xyxy[0].tolist(), box, *writer.tolerance(w, h))


@settings(max_examples=150, deadline=None)
@given(sized_box())
def test_paligemma_decodes_through_supervision(case):
    """supervision divides by 1024 (big_vision's decoder: 1023): its box times 1024/1023 is ours exactly."""
    w, h, box = case
    writer = get_writer("paligemma").from_mapping({})
    try:
        (record,) = writer.render(sample(w, h, box), "rec", 0)
    except Exception:
        return
    xyxy, _, names = from_paligemma(record["suffix"], (w, h))
    assert list(names) == ["red car"]
    ours = writer.parse(record)[0].boxes[0]
    assert (xyxy[0] * 1024 / 1023).tolist() == pytest.approx(ours)
    within_one_step(ours, box, *writer.tolerance(w, h))


@settings(max_examples=150, deadline=None)
@given(sized_box())
def test_florence2_decodes_through_supervision(case):
    w, h, box = case
    writer = get_writer("florence-2").from_mapping({})
    try:
        (record,) = writer.render(sample(w, h, box), "rec", 0)
    except Exception:
        return
    xyxy, labels, _, _ = from_florence_2({"<REGION_TO_DESCRIPTION>": record["suffix"]}, (w, h))
    assert list(labels) == ["red car"]
    within_one_step(xyxy[0].tolist(), box, *writer.tolerance(w, h))  # bin start, not centre: still < 1 step


def paligemma_processor() -> PaliGemmaProcessor:
    """The real processor with a small offline vocabulary holding Gemma's <locNNNN> tokens (no hub)."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<image>": 4}
    for word in ["detect", "the", "red", "car", ";"]:
        vocab[word] = len(vocab)
    for i in range(1024):
        vocab[f"<loc{i:04d}>"] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.add_special_tokens({"additional_special_tokens": ["<image>"] + [f"<loc{i:04d}>" for i in range(1024)]})
    images = SiglipImageProcessorPil(size={"height": 28, "width": 28})
    images.image_seq_length = 4
    return PaliGemmaProcessor(image_processor=images, tokenizer=fast)


def test_paligemma_suffix_accepted_by_processor():
    processor = paligemma_processor()
    two = sample(640, 480, [100.0, 50.0, 300.0, 390.0], "the red car")
    two.regions[0].boxes.append([400.0, 60.0, 500.0, 200.0])
    (record,) = get_writer("paligemma").from_mapping({}).render(two, "rec", 0)
    out = processor(
        text="<image>" + record["prefix"],
        images=Image.new("RGB", (640, 480)),
        suffix=record["suffix"],
        return_tensors="np",
    )
    labels = out["labels"][0]
    taught = processor.tokenizer.convert_ids_to_tokens(labels[labels != -100].tolist())
    assert taught == [
        "<loc0107>", "<loc0160>", "<loc0831>", "<loc0480>", "the", "red", "car", ";",
        "<loc0128>", "<loc0639>", "<loc0426>", "<loc0799>", "the", "red", "car", "<eos>",
    ]  # fmt: skip
    assert np.all(out["token_type_ids"][0][labels != -100] == 1)  # the suffix is what the loss is computed on
