"""Qwen3-VL: relative 0..1000 again, JSON ``bbox_2d`` answers by default (or Qwen2-VL's tokens).

FORMATS_NEXT §3.  [doc] QwenLM/Qwen3-VL ``cookbooks/2d_grounding.ipynb``: "Qwen3-VL's default coordinate
system has been changed from the absolute coordinates used in Qwen2.5-VL to relative coordinates ranging
from 0 to 1000"; [maint] QwenLM/Qwen3-VL#1486 (reuse ``convert_to_qwen2vl_format``: ``round(v / size * 1000)``,
no second conversion after resizing).  Whether training used 0..1000 or 0..999 (QwenLM/Qwen3-VL#1741 quotes
Alibaba Cloud docs: "normalized to a range of 0 to 999") is UNVERIFIED: ``--max-coord 1000|999``, default
1000 as the cookbook says (999 keeps scale 1000 and clamps, so only the far edge changes).
The convention is :func:`~.qwen2_vl.qwen_json` (or Qwen2-VL's) on that grid: fully declarative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .. import boxes as B
from .qwen2_vl import QwenJsonOptions, QwenJsonWriter, qwen_json


@dataclass
class Qwen3VlOptions(QwenJsonOptions):
    max_coord: Literal["1000", "999"] = "1000"


class Qwen3VlWriter(QwenJsonWriter):
    name = "qwen3-vl"
    description = "Qwen3-VL conversations: JSON bbox_2d relative 0-1000 (or 0-999), round half-even"
    Options = Qwen3VlOptions
    json_templates = "qwen3-vl"
    convention = qwen_json(B.Quantizer(scale=1000, rounding="round", max_index=1000), fence=True)
    options: Qwen3VlOptions

    def grid(self) -> B.Quantizer:
        return B.Quantizer(scale=1000, rounding="round", max_index=int(self.options.max_coord))
