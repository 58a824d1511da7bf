"""The image size Qwen2.5-VL actually sees: ``smart_resize`` and the trainers' settings of it.

Qwen2.5-VL's boxes are absolute pixels of the image *after* ``smart_resize`` (FORMATS_NEXT §2), so a
record is only right for the ``min_pixels``/``max_pixels``/``factor`` of the trainer that feeds it.  The
named profiles below are those trainers' defaults, each with its source; :class:`ResizeSetting` is one of
them or the user's explicit numbers.  Box arithmetic stays in :mod:`grounding_convert.boxes`; this module
only computes sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .boxes import BoxError

#: ``image_patch_size * SPATIAL_MERGE_SIZE``: 14 * 2 for Qwen2/2.5-VL, 16 * 2 for Qwen3-VL
#: (QwenLM/Qwen3-VL qwen-vl-utils/src/qwen_vl_utils/vision_process.py, SPATIAL_MERGE_SIZE = 2).
QWEN25_FACTOR = 28
MAX_RATIO = 200  # vision_process.py MAX_RATIO; transformers raises at the same ratio


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) of the resized image, as transformers' Qwen2-VL image processor computes it.

    huggingface/transformers ``models/qwen2_vl/image_processing_pil_qwen2_vl.py`` ``smart_resize`` (also
    ``image_processing_qwen2_vl.py``), line for line.  It differs from qwen_vl_utils 0.0.14
    (``vision_process.py`` L56–83) only where that one gives a side of 0 (very elongated images under a
    small ``max_pixels``) or a side under ``factor / 2`` rounds to 0: the processor that feeds the model is
    transformers', so it is followed (FORMATS_NEXT §2; both are tested in tests/test_resize.py).
    """
    if height <= 0 or width <= 0:
        raise BoxError(f"image size {width}x{height} cannot be resized")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise BoxError(
            f"absolute aspect ratio must be smaller than {MAX_RATIO}, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class ResizeSetting:
    """How one trainer sizes images for Qwen2.5-VL: ``smart_resize`` bounds, and an optional pre-resize.

    ``pre_max_pixels``/``pre_min_pixels``: LLaMA-Factory first scales the image by
    ``sqrt(limit / (w * h))`` and truncates with ``int()`` (``src/llamafactory/data/mm_plugin.py``
    ``_preprocess_image`` L218–235, ``image_max_pixels`` default ``768 * 768``, ``image_min_pixels``
    ``32 * 32`` in ``hparams/model_args.py`` L305–312), then the checkpoint's processor smart-resizes again.
    """

    factor: int
    min_pixels: int
    max_pixels: int
    pre_max_pixels: int | None = None
    pre_min_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.factor <= 0 or self.min_pixels <= 0 or self.max_pixels < self.min_pixels:
            raise ValueError(
                f"resize setting needs factor > 0 and 0 < min_pixels <= max_pixels "
                f"(factor {self.factor}, min_pixels {self.min_pixels}, max_pixels {self.max_pixels})"
            )

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(W', H'): the size of the image the model is fed, from the original ``width × height``."""
        if self.pre_max_pixels is not None and width * height > self.pre_max_pixels:
            f = math.sqrt(self.pre_max_pixels / (width * height))
            width, height = int(width * f), int(height * f)
        if self.pre_min_pixels is not None and width * height < self.pre_min_pixels:
            f = math.sqrt(self.pre_min_pixels / (width * height))
            width, height = int(width * f), int(height * f)
        h, w = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return w, h


#: The trainers' defaults (FORMATS_NEXT §2 table).
PROFILES: dict[str, ResizeSetting] = {
    # HF checkpoint preprocessor_config.json (e.g. Qwen/Qwen2-VL-2B @258ddfbb): min 3136, max 12845056
    "hf": ResizeSetting(QWEN25_FACTOR, 3136, 12845056),
    # QwenLM/Qwen3-VL qwen-vl-finetune/qwenvl/train/argument.py L19–20 (DataArguments)
    "qwen-finetune": ResizeSetting(QWEN25_FACTOR, 28 * 28 * 16, 28 * 28 * 576),
    # QwenLM/Qwen3-VL qwen-vl-finetune/scripts/sft.sh L44–45 (also sft_7b, sft_32b)
    "qwen-sft-script": ResizeSetting(QWEN25_FACTOR, 784, 50176),
    # modelscope/ms-swift swift/template/templates/qwen.py L526–528: qwen_vl_utils defaults
    # (vision_process.py IMAGE_MIN_TOKEN_NUM 4, IMAGE_MAX_TOKEN_NUM 16384, times factor**2)
    "ms-swift": ResizeSetting(QWEN25_FACTOR, 4 * 28 * 28, 16384 * 28 * 28),
    # hiyouga/LLaMA-Factory hparams/model_args.py L305–312 + data/mm_plugin.py L218–235, then the checkpoint's
    # processor (the "hf" bounds)
    "llamafactory": ResizeSetting(QWEN25_FACTOR, 3136, 12845056, pre_max_pixels=768 * 768, pre_min_pixels=32 * 32),
}
