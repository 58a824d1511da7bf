"""Qwen2.5-VL: absolute pixels of the ``smart_resize``d image, JSON ``bbox_2d`` answers (or Qwen2-VL's tokens).

FORMATS_NEXT §2.  Boxes are pixels of the image *after* ``smart_resize`` ([maint] QwenLM/Qwen3-VL#721),
[code] QwenLM/Qwen3-VL ``qwen-vl-finetune/tools/process_bbox.ipynb`` ``convert_to_qwen25vl_format``::

    new_height, new_width = smart_resize(orig_height, orig_width, factor, min_pixels, max_pixels)
    scale_w = new_width / orig_width; scale_h = new_height / orig_height
    x1_new = round(x1 * scale_w)                   # half-to-even; y with scale_h
    x1_new = max(0, min(x1_new, new_width - 1))    # the last pixel index, not new_width

so the grid is ``Quantizer(scale=W', round, max_index=W'-1, arithmetic="ratio")`` per sample.  The size
``W' × H'`` depends on the trainer's ``min_pixels``/``max_pixels``: the writer refuses to guess
(``--resize-profile`` or explicit ``--min-pixels/--max-pixels``; :mod:`grounding_convert.resize`), and
every record carries ``resized_width``/``resized_height`` so it can be checked and decoded.
JSON spelling: roboflow/maestro ``67f1caf3`` ``maestro/trainer/models/qwen_2_5_vl/detection.py`` (one
object per box, tab-indented list) in the ```` ```json ```` fence the Qwen cookbooks' answers use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from .. import boxes as B
from ..errors import RecordError, UsageError
from ..resize import PROFILES, QWEN25_FACTOR, ResizeSetting
from ..schema import Sample
from .base import ConversationOptions
from .qwen2_vl import QwenJsonWriter
from .spelled import BoxFormat


@dataclass
class Qwen25VlOptions(ConversationOptions):
    resize_profile: str | None = None  # one of resize.PROFILES
    min_pixels: int | None = None
    max_pixels: int | None = None
    factor: int | None = None  # default 28 (14-pixel patches, 2x2 merge)
    box_format: BoxFormat = "json"
    json_fence: bool = True


class Qwen25VlWriter(QwenJsonWriter):
    name = "qwen2.5-vl"
    description = "Qwen2.5-VL conversations: JSON bbox_2d in pixels of the smart-resized image (needs a resize profile)"
    Options = Qwen25VlOptions
    quantizer = B.Quantizer(scale=1, rounding="round", max_index=0)  # never used: the grid is per sample

    json_templates = "qwen2.5-vl"
    demo_options: ClassVar[dict[str, str]] = {"resize_profile": "hf"}  # `grounding-convert demo` has to pick one

    def __init__(self, options: Qwen25VlOptions | None = None):
        options = options if options is not None else self.Options()
        self.setting = resize_setting(options)
        super().__init__(options)

    def grids(self, width: int, height: int) -> tuple[B.Quantizer, B.Quantizer]:
        new_w, new_h = self.setting.resized(width, height)
        return axis_grid(new_w), axis_grid(new_h)

    def record_grids(self, record: dict[str, Any] | None, width: int, height: int) -> tuple[B.Quantizer, B.Quantizer]:
        if record is None:
            return self.grids(width, height)
        new_w, new_h = record.get("resized_width"), record.get("resized_height")
        if not all(type(v) is int and v > 0 for v in (new_w, new_h)):
            raise RecordError("bad-size", f"record {record.get('id')!r} has no usable resized_width/resized_height")
        return axis_grid(new_w), axis_grid(new_h)

    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        return super().model_fields() + [("resized_width", pa.int64()), ("resized_height", pa.int64())]

    def extra_columns(self, sample: Sample) -> dict[str, Any]:
        try:
            new_w, new_h = self.setting.resized(sample.image.width, sample.image.height)
        except B.BoxError as exc:
            raise RecordError("bad-size", f"sample {sample.id}: {exc}") from None
        return {"resized_width": new_w, "resized_height": new_h}


def axis_grid(new_size: int) -> B.Quantizer:
    """``round(v * new/orig)`` clamped to the last pixel index ``new - 1`` (notebook ``convert_to_qwen25vl_format``)."""
    return B.Quantizer(scale=new_size, rounding="round", max_index=new_size - 1, arithmetic="ratio")


def resize_setting(options: Qwen25VlOptions) -> ResizeSetting:
    """The profile, or the explicit numbers; neither is a usage error (exit 2) listing the choices."""
    explicit = options.min_pixels is not None or options.max_pixels is not None
    if options.resize_profile is None and not explicit:
        raise UsageError(
            "qwen2.5-vl writes pixels of the resized image, so it needs the trainer's resize setting: "
            f"--resize-profile {{{','.join(PROFILES)}}} or --min-pixels N --max-pixels N [--factor N]"
        )
    if options.resize_profile is not None:
        if options.resize_profile not in PROFILES:
            raise UsageError(f"unknown --resize-profile {options.resize_profile!r} (profiles: {', '.join(PROFILES)})")
        if explicit or options.factor is not None:
            raise UsageError("give either --resize-profile or --min-pixels/--max-pixels/--factor, not both")
        return PROFILES[options.resize_profile]
    if options.min_pixels is None or options.max_pixels is None:
        raise UsageError("--min-pixels and --max-pixels go together (or use --resize-profile)")
    try:
        return ResizeSetting(options.factor or QWEN25_FACTOR, options.min_pixels, options.max_pixels)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
