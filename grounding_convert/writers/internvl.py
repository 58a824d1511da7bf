"""InternVL 2 / 2.5 / 3 / 3.5: ``<ref>…</ref><box>[[x1, y1, x2, y2], …]</box>``, round to 0..1000.

FORMATS_NEXT §4.  Formula [doc] czczup/InternVL-doc ``458c7fc5`` ``docs/en/get_started/chat_data_format.md``
"Grounding / Detection Data"::

    normalized_box = [round((x1 / image_width) * 1000), round((y1 / image_height) * 1000), ...]

(no clamp shown there; clamped to 0..1000 here).  All boxes of a phrase go in one list,
``<ref>bomb</ref><box>[[473, 61, 552, 181], [569, 61, 648, 183]]</box>``.  Decoding ÷1000 × size as
OpenGVLab/InternVL ``2410d1d`` ``internvl_chat/eval/refcoco/evaluate_grounding.py`` L187–205.  Layout: JSONL
``{"id", "image", "width", "height", "conversations"}`` plus the meta JSON its trainer reads
(``{name: {"root", "annotation", "data_augment", "repeat_time", "length"}}``), written beside the shards
as ``internvl_meta.json``.  Fully declarative (:data:`INTERNVL`) but for that companion file.
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import boxes as B
from .base import ConversationOptions
from .convention import Convention, Conversation, Spelling, Tagging
from .decoding import ConventionParse

INTERNVL = Convention(
    grid=B.Quantizer(scale=1000, rounding="round", max_index=1000),
    spelling=Spelling(box=("[", 0, ", ", 1, ", ", 2, ", ", 3, "]"), joiner=", ", group=("<box>[", "]</box>")),
    tagging=Tagging(open="<ref>", close="</ref>"),
    # chat_data_format.md: {"from": "human", "value": "<image>\n…"}, {"from": "gpt", …}
    layout=Conversation(keys=("from", "value"), roles=("human", "gpt"), head="<image>\n"),
    placeholders=(("rec", "phrase"), ("reg", "boxes")),
    answers=(("rec", "<ref>{phrase}</ref>{boxes}"), ("reg", "{phrase}"), ("grounded-caption", "{caption}")),
    reserved=("</box>", "</ref>", "<box>", "<ref>", "<image>"),
)


class InternVlWriter(ConventionParse):
    name = "internvl"
    description = "InternVL 2-3.5 conversations: <ref>…</ref><box>[[x1, y1, x2, y2]]</box>, round 0-1000"
    template_name = "internvl"
    Options = ConversationOptions
    convention = INTERNVL

    def companion_files(self, shards: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, bytes]:
        """``internvl_meta.json``: one entry per shard, as ``internvl_chat/shell/data/*.json`` declare them."""
        name = str(job.get("reader", "grounding")).replace("-", "_")
        meta = {
            f"{name}_{shard['file'].rsplit('/', 1)[-1].split('.')[0].replace('-', '_')}": {
                "root": "",
                "annotation": shard["file"],
                "data_augment": False,
                "repeat_time": 1,
                "length": shard["records"],
            }
            for shard in shards
        }
        return {"internvl_meta.json": orjson.dumps(meta, option=orjson.OPT_INDENT_2)}
