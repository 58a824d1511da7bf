"""Qwen2.5-VL: absolute pixels of the ``smart_resize``d image, JSON ``bbox_2d`` answers (or Qwen2-VL's tokens).

FORMATS_NEXT §2.  Boxes are pixels of the image *after* ``smart_resize`` ([maint] QwenLM/Qwen3-VL#721),
[code] QwenLM/Qwen3-VL ``qwen-vl-finetune/tools/process_bbox.ipynb`` ``convert_to_qwen25vl_format``::

    new_height, new_width = smart_resize(orig_height, orig_width, factor, min_pixels, max_pixels)
    scale_w = new_width / orig_width; scale_h = new_height / orig_height
    x1_new = round(x1 * scale_w)                   # half-to-even; y with scale_h
    x1_new = max(0, min(x1_new, new_width - 1))    # the last pixel index, not new_width

so the grid is :class:`~grounding_convert.boxes.ResizedPixels`: per sample and axis ``Quantizer(scale=W', round,
max_index=W'-1, arithmetic="ratio")``.  The size
``W' × H'`` depends on the trainer's ``min_pixels``/``max_pixels``: the writer refuses to guess
(``--resize-profile`` or explicit ``--min-pixels/--max-pixels``; :mod:`grounding_convert.resize`), and
every record carries ``resized_width``/``resized_height`` so it can be checked and decoded.
JSON spelling: roboflow/maestro ``67f1caf3`` ``maestro/trainer/models/qwen_2_5_vl/detection.py`` (one
object per box, tab-indented list) in the ```` ```json ```` fence the Qwen cookbooks' answers use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .. import boxes as B
from ..errors import UsageError
from ..option_types import PIXELS, bounded
from ..resize import PROFILES, QWEN25_FACTOR, ResizeSetting
from .qwen2_vl import QwenJsonOptions, QwenJsonWriter, qwen_json


@dataclass
class Qwen25VlOptions(QwenJsonOptions):
    resize_profile: str | None = None  # one of resize.PROFILES
    min_pixels: int | None = bounded(None, PIXELS)
    max_pixels: int | None = bounded(None, PIXELS)
    factor: int | None = bounded(None, PIXELS)  # default 28 (14-pixel patches, 2x2 merge)


class Qwen25VlWriter(QwenJsonWriter):
    name = "qwen2.5-vl"
    description = "Qwen2.5-VL conversations: JSON bbox_2d in pixels of the smart-resized image (needs a resize profile)"
    Options = Qwen25VlOptions
    json_templates = "qwen2.5-vl"
    convention = qwen_json(B.ResizedPixels(PROFILES["hf"]), fence=True)  # the layout; the grid is the options'
    demo_options: ClassVar[dict[str, str]] = {"resize_profile": "hf"}  # `grounding-convert demo` has to pick one
    options: Qwen25VlOptions

    def __init__(self, options: Qwen25VlOptions | None = None):
        options = options if options is not None else self.Options()
        self.setting = resize_setting(options)
        super().__init__(options)

    def grid(self) -> B.ResizedPixels:
        return B.ResizedPixels(self.setting)


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
