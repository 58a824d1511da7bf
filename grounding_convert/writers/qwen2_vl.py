"""Qwen2-VL: ``<|object_ref_start|>…<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``, round to 0..1000.

FORMATS_NEXT §1.  Spelling [maint] kq-chen in QwenLM/Qwen3-VL#105 (Qwen-VL's ``<ref>``/``<box>`` renamed, same
normalization); formula [code] QwenLM/Qwen3-VL ``qwen-vl-finetune/tools/process_bbox.ipynb``
``convert_to_qwen2vl_format``::

    x1_new = round(x1 / w * 1000)        # Python round: half-to-even (812.5 -> 812)
    x1_new = max(0, min(x1_new, 1000))   # inclusive 1000

Several boxes of one phrase repeat the ``<|box_start|>`` block after one ref (ms-swift
``docs/source_en/Customization/Custom-dataset.md`` L294–296).  Layout [doc] ``qwen-vl-finetune/README.md``
"Grounding Example": ``{"image", "conversations": [{"from": "human", "value": "<image>\\n…"}, {"from": "gpt", …}]}``.
Whether Qwen2-VL kept Qwen-VL's space inside the ref in grounded captions is UNVERIFIED: the phrase is
wrapped exactly as it stands in the caption.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import boxes as B
from ..schema import Region, Sample
from .base import Decoded, ordered_spans
from .spelled import JSON_LIST, ConversationWriter, Spelling, json_answer, parse_json_answer

QUANTIZER = B.Quantizer(scale=1000, rounding="round", max_index=1000)
TOKENS = Spelling(
    box="<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>",
    ref="<|object_ref_start|>{phrase}<|object_ref_end|>",
)


class Qwen2VlWriter(ConversationWriter):
    name = "qwen2-vl"
    description = "Qwen2-VL conversations: <|object_ref_start|>…<|box_start|>(x1,y1),(x2,y2)<|box_end|>, round 0-1000"
    template_name = "qwen2-vl"
    spelling = TOKENS
    quantizer = QUANTIZER


class QwenJsonWriter(ConversationWriter):
    """Qwen2.5-VL / Qwen3-VL: answers as a JSON list of ``{"bbox_2d", "label"}`` (``--box-format json``, the
    default) or Qwen2-VL's tokens (``--box-format tokens``, ms-swift's legacy spelling); REG prompts spell the
    region as ``[x1, y1, x2, y2]``."""

    json_templates: ClassVar[str]

    def __init__(self, options: Any = None):
        options = options if options is not None else self.Options()
        self.template_name = self.json_templates if options.box_format == "json" else "qwen2-vl"
        super().__init__(options)

    def spelling_now(self) -> Spelling:
        return JSON_LIST if self.options.box_format == "json" else TOKENS

    def answer(self, sample: Sample, regions: list[Region], labels: list[str]) -> str:
        if self.options.box_format != "json":
            return super().answer(sample, regions, labels)
        w, h = sample.image.width, sample.image.height
        items = [(label, self.quantize(b, w, h)) for r, label in zip(regions, labels, strict=True) for b in r.boxes]
        return json_answer(items, self.options.json_fence)

    def caption_answer(self, sample: Sample) -> str:
        if self.options.box_format != "json":
            return super().caption_answer(sample)
        regions = ordered_spans(sample)
        text = self.plain(sample.text, sample)
        return self.answer(sample, regions, [text[r.span[0] : r.span[1]] for r in regions])

    def decode_answer(self, reply: str, width: int, height: int, record: dict[str, Any]) -> list[Decoded]:
        if self.options.box_format != "json":
            return super().decode_answer(reply, width, height, record)
        return parse_json_answer(reply, lambda q: self.dequantize(q, width, height, record))
