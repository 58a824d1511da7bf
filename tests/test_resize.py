"""smart_resize and the trainer profiles: FORMATS_NEXT's table, and equality with the upstream code itself
(transformers' Qwen2-VL image processor, qwen_vl_utils) on hypothesis sizes."""

from __future__ import annotations

import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from grounding_convert.boxes import BoxError
from grounding_convert.resize import PROFILES, ResizeSetting, smart_resize


def qwen_vl_utils_smart_resize():
    """qwen_vl_utils' own ``smart_resize``.  The package imports torchvision at the top for video decoding
    (and PyPI's torchvision does not import beside the CPU torch build): a stub module stands in for it,
    so the function under test is upstream's, unchanged."""
    if "torchvision" not in sys.modules:
        stub = types.ModuleType("torchvision")
        stub.__version__ = "0.0.0"
        stub.io = types.ModuleType("torchvision.io")
        stub.transforms = types.ModuleType("torchvision.transforms")
        stub.transforms.InterpolationMode = type("InterpolationMode", (), {"BICUBIC": 3})
        sys.modules.update({"torchvision": stub, "torchvision.io": stub.io, "torchvision.transforms": stub.transforms})
    from qwen_vl_utils.vision_process import smart_resize as upstream

    return upstream


MAX_PIXELS = [50176, 200704, 451584, 1003520, 12845056]
sizes = st.integers(1, 5000)


@pytest.mark.parametrize(
    ("profile", "size"),
    [("hf", (644, 476)), ("qwen-finetune", (644, 476)), ("llamafactory", (644, 476)), ("qwen-sft-script", (252, 168))],
)
def test_profiles_on_the_worked_example(profile, size):
    assert PROFILES[profile].resized(640, 480) == size
    assert ResizeSetting(28, 3136, 200704).resized(640, 480) == (504, 364)


def test_llamafactory_pre_resizes_big_images():
    # 4000x3000 > 768*768: int(4000*f), int(3000*f) with f = sqrt(589824 / 12e6) -> 886x665, then smart_resize
    assert PROFILES["llamafactory"].resized(4000, 3000) == (896, 672)
    assert PROFILES["hf"].resized(4000, 3000) != PROFILES["llamafactory"].resized(4000, 3000)


@settings(max_examples=400, deadline=None)
@given(sizes, sizes, st.sampled_from(MAX_PIXELS), st.sampled_from([784, 3136, 12544]))
def test_equals_transformers_image_processor_function(h, w, max_pixels, min_pixels):
    try:
        expected = hf_smart_resize(h, w, 28, min_pixels, max_pixels)
    except ValueError:
        with pytest.raises(BoxError):
            smart_resize(h, w, 28, min_pixels, max_pixels)
        return
    assert smart_resize(h, w, 28, min_pixels, max_pixels) == expected


@settings(max_examples=400, deadline=None)
@given(sizes, sizes, st.sampled_from(MAX_PIXELS))
def test_equals_qwen_vl_utils_except_its_documented_edges(h, w, max_pixels):
    upstream = qwen_vl_utils_smart_resize()
    try:
        theirs = upstream(h, w, 28, 3136, max_pixels)
    except ValueError:
        return  # aspect ratio > 200: both refuse
    ours = smart_resize(h, w, 28, 3136, max_pixels)
    if ours != theirs:
        # FORMATS_NEXT §2: qwen_vl_utils floors a side to 0 under a small max_pixels (transformers keeps
        # factor), or keeps `factor` for a side under factor/2 where transformers rounds it to 0 first
        assert 0 in theirs or min(h, w) < 14 or min(round(h / 28), round(w / 28)) == 0


def test_the_known_disagreement():
    assert qwen_vl_utils_smart_resize()(3994, 34, 28, 3136, 50176)[1] == 0
    assert smart_resize(3994, 34, 28, 3136, 50176) == (2408, 28)


@pytest.mark.parametrize(("w", "h"), [(640, 480), (333, 500), (1, 120), (4999, 31)])
@pytest.mark.parametrize("profile", ["hf", "qwen-sft-script", "qwen-finetune"])
def test_equals_what_the_processor_feeds_the_model(w, h, profile):
    setting = PROFILES[profile]
    processor = Qwen2VLImageProcessorPil(min_pixels=setting.min_pixels, max_pixels=setting.max_pixels)
    (grid,) = processor(images=Image.new("RGB", (w, h)), return_tensors="np")["image_grid_thw"]
    assert setting.resized(w, h) == (int(grid[2]) * 14, int(grid[1]) * 14)
