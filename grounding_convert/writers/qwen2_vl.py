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
wrapped exactly as it stands in the caption.  Fully declarative: both renderers and ``parse`` come from
:data:`QWEN2_VL`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal

from .. import boxes as B
from .base import ConversationOptions
from .convention import Convention, Conversation, Grid, Listing, Spelling, Tagging
from .decoding import ConventionParse

REF_OPEN, REF_CLOSE = "<|object_ref_start|>", "<|object_ref_end|>"
BOX_OPEN, BOX_CLOSE = "<|box_start|>", "<|box_end|>"
IMAGE_TOKEN = "<image>"

QWEN2_VL = Convention(
    grid=B.Quantizer(scale=1000, rounding="round", max_index=1000),
    spelling=Spelling(box=(BOX_OPEN + "(", 0, ",", 1, "),(", 2, ",", 3, ")" + BOX_CLOSE)),
    tagging=Tagging(open=REF_OPEN, close=REF_CLOSE),
    # qwen-vl-finetune README "Grounding Example": one <image> at the start of the first human turn
    layout=Conversation(keys=("from", "value"), roles=("human", "gpt"), head=IMAGE_TOKEN + "\n"),
    placeholders=(("rec", "phrase"), ("reg", "boxes")),
    answers=(
        ("rec", REF_OPEN + "{phrase}" + REF_CLOSE + "{boxes}"),
        ("reg", "{phrase}"),
        ("grounded-caption", "{caption}"),
    ),
    reserved=(REF_OPEN, REF_CLOSE, BOX_OPEN, BOX_CLOSE, IMAGE_TOKEN),
)


class Qwen2VlWriter(ConventionParse):
    name = "qwen2-vl"
    description = "Qwen2-VL conversations: <|object_ref_start|>…<|box_start|>(x1,y1),(x2,y2)<|box_end|>, round 0-1000"
    template_name = "qwen2-vl"
    Options = ConversationOptions
    convention = QWEN2_VL


# --- JSON answers (Qwen2.5-VL, Qwen3-VL) ------------------------------------------------------------------

#: One object per box, tab-indented, joined by ",\n" inside "[\n" … "\n]": roboflow/maestro ``67f1caf3``
#: ``maestro/trainer/models/qwen_2_5_vl/detection.py`` (FORMATS_NEXT §2, §3), in the ```json fence of the
#: Qwen cookbooks' answers; REG prompts spell the region as ``[x1, y1, x2, y2]``.
JSON_OBJECTS = Listing(
    item='\t{{"bbox_2d": {boxes}, "label": {label}}}',
    joiner=",\n",
    group=("[\n", "\n]"),
    per_box=True,
    json_labels=True,
)


def qwen_json(grid: Grid, fence: bool) -> Convention:
    answer = "```json\n{objects}\n```" if fence else "{objects}"
    return replace(
        QWEN2_VL,
        grid=grid,
        spelling=Spelling(box=("[", 0, ", ", 1, ", ", 2, ", ", 3, "]"), joiner=", "),
        tagging=Tagging(),
        placeholders=(("rec", "phrase"), ("reg", "boxes"), ("grounded-caption", "caption")),
        answers=(("rec", answer), ("reg", "{phrase}"), ("grounded-caption", answer)),
        listing=JSON_OBJECTS,
        reserved=(IMAGE_TOKEN,),
    )


@dataclass
class QwenJsonOptions(ConversationOptions):
    box_format: Literal["json", "tokens"] = "json"  # tokens: Qwen2-VL's spelling (ms-swift's legacy one)
    json_fence: bool = True


class QwenJsonWriter(ConventionParse):
    """Qwen2.5-VL / Qwen3-VL: JSON ``bbox_2d`` answers (``--box-format json``, the default) or Qwen2-VL's tokens,
    on the grid :meth:`grid` gives; the templates follow the spelling."""

    Options: ClassVar[type[QwenJsonOptions]] = QwenJsonOptions
    json_templates: ClassVar[str]
    options: QwenJsonOptions

    def __init__(self, options: QwenJsonOptions | None = None):
        options = options if options is not None else self.Options()
        self.template_name = self.json_templates if options.box_format == "json" else "qwen2-vl"
        super().__init__(options)

    def grid(self) -> Grid:
        return QWEN2_VL.grid

    def make_convention(self) -> Convention:
        if self.options.box_format == "json":
            return qwen_json(self.grid(), self.options.json_fence)
        return replace(QWEN2_VL, grid=self.grid())
