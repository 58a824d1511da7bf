"""Florence-2: ``<loc_N>`` tokens, floor into 1000 bins (0..999), task tokens as prefixes.

FORMATS_NEXT §5.  Formula [code] huggingface/transformers ``06053b84``
``models/florence2/processing_florence2.py`` ``Florence2PostProcessor.quantize`` (``quantize_bins =
(1000, 1000)``; the original remote code's ``BoxQuantizer(mode='floor')`` is the same)::

    q_xmin = (xmin / (size_w / bins_w)).floor().clamp(0, bins_w - 1)   # float32 tensors
    dq_xmin = (xmin + 0.5) * (size_w / bins_w)                         # decode: bin centre

hence ``Quantizer(1000, floor, max_index=999, arithmetic="per-bin-f32")``; the vocabulary has
``<loc_0>``…``<loc_999>`` only (maestro and ms-swift round and can emit ``<loc_1000>``: not done here).
Tasks (prefix → suffix): REC ``<OPEN_VOCABULARY_DETECTION>expr`` → ``expr<loc>×4``; grounded caption
``<CAPTION_TO_PHRASE_GROUNDING>caption`` → each phrase and its locs; REG ``<REGION_TO_DESCRIPTION><loc>×4`` →
text.  Records ``{"image", "prefix", "suffix"}`` as Roboflow's Florence-2 JSONL
(https://roboflow.com/formats/florence-2).  The prefixes are ``configs/templates/florence-2.yaml`` (one
phrasing per task: the task token is the model's fixed prompt).
"""

from __future__ import annotations

from typing import Any

from .. import boxes as B
from ..schema import Region, Sample
from .base import Decoded, RecordRandom, ordered_spans
from .spelled import PrefixSuffixWriter, Spelling, fill

QUANTIZER = B.Quantizer(scale=1000, rounding="floor", max_index=999, arithmetic="per-bin-f32")
LOCS = Spelling(box="<loc_{x1}><loc_{y1}><loc_{x2}><loc_{y2}>")
REC, CAPTION, REG = "<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>", "<REGION_TO_DESCRIPTION>"


class Florence2Writer(PrefixSuffixWriter):
    name = "florence-2"
    description = "Florence-2 image/prefix/suffix: task token prefixes, <loc_N> floor into 1000 bins (0-999)"
    tasks = ("rec", "reg", "grounded-caption")
    spelling = LOCS
    quantizer = QUANTIZER
    template_name = "florence-2"
    also_reserved = ("<loc_", REC, CAPTION, REG, "<OD>")
    required_placeholders = {"rec": ("{phrase}",), "reg": ("{boxes}",), "grounded-caption": ("{caption}",)}

    def render_rec(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        phrase = self.plain(region.phrase, sample)
        prefix = fill(self.choose_template("rec", rng), phrase=phrase)
        return self.prefix_suffix(prefix, phrase + self.spell(sample, region), sample)

    def render_reg(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        prefix = fill(self.choose_template("reg", rng), boxes=self.spell(sample, region))
        return self.prefix_suffix(prefix, self.plain(region.phrase, sample), sample)

    def render_grounded_caption(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        text = self.plain(sample.text, sample)
        parts = [text[r.span[0] : r.span[1]] + self.spell(sample, r) for r in ordered_spans(sample)]
        return self.prefix_suffix(
            fill(self.choose_template("grounded-caption", rng), caption=text), "".join(parts), sample
        )

    def decode_record(self, prefix: str, suffix: str, width: int, height: int, record: dict[str, Any]) -> list[Decoded]:
        if record.get("task") == "reg":
            boxes = [b for g in self.decode_groups(prefix, width, height, record) for b in g.boxes]
            return [Decoded(suffix, boxes)]
        return self.decode_groups(suffix, width, height, record)
