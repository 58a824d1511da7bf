"""PaliGemma 1/2: ``<locNNNN>`` tokens **y first**, ``round(v / size * 1023)`` clipped to 0..1023.

FORMATS_NEXT §6.  Formula [code] google-research/big_vision ``5f95305c``
``big_vision/pp/proj/paligemma/segmentation.py`` ``refcoco_mask2str`` (the official RefCOCO transfer)::

    loc_tokens = ['<loc%04d>' % i for i in range(1024)]
    binned_loc = tf.clip_by_value(tf.cast(tf.round(bbox * 1023), tf.int32), 0, 1023)  # [ymin, xmin, ymax, xmax]

``tf.round`` is half-to-even, as Python's ``round``.  Decoding ``/1023`` as the official evaluator
(``big_vision/evaluators/proj/paligemma/transfers/segmentation.py``); supervision and the HF cookbook divide
by 1024 (up to one extra step at the far edge).  Object: ``<loc ymin><loc xmin><loc ymax><loc xmax> label``;
several objects joined by `` ; `` (HF cookbook); prompt ``detect {things}`` ([doc]
``big_vision/configs/proj/paligemma/README.md``), several things joined by `` ; `` too.  REC: ``detect expr``;
grounded caption: every grounded phrase of the caption detected at once (PaliGemma has no grounded-caption
prompt; this is its multi-object detection form).  Records ``{"image", "prefix", "suffix"}`` (big_vision
``transfers/forkme.py`` ``bv:jsonl``; HF ``PaliGemmaProcessor(text=prefix, suffix=suffix)``).
"""

from __future__ import annotations

import re
from typing import Any

from .. import boxes as B
from ..errors import RecordError
from ..schema import Region, Sample
from .base import Decoded, RecordRandom, ordered_spans
from .spelled import FIELDS, PrefixSuffixWriter, Spelling, fill

QUANTIZER = B.Quantizer(scale=1023, rounding="round", max_index=1023)
LOCS = Spelling(box="<loc{y1:04d}><loc{x1:04d}><loc{y2:04d}><loc{x2:04d}>")
SEPARATOR = " ; "
OBJECT = re.compile(r"((?:<loc[0-9]{4}>){4}) (.*)", re.S)


class PaliGemmaWriter(PrefixSuffixWriter):
    name = "paligemma"
    description = "PaliGemma image/prefix/suffix: detect …, <locNNNN> y-first round(v/size*1023), ' ; '-joined"
    template_name = "paligemma"
    spelling = LOCS
    quantizer = QUANTIZER
    also_reserved = ("<loc", "<seg", SEPARATOR)
    required_placeholders = {"rec": ("{phrase}",), "grounded-caption": ("{phrases}",)}

    def objects(self, sample: Sample, regions: list[Region], labels: list[str]) -> str:
        w, h = sample.image.width, sample.image.height
        return SEPARATOR.join(
            f"{LOCS.spell([self.quantize(b, w, h)])} {label}"
            for region, label in zip(regions, labels, strict=True)
            for b in region.boxes
        )

    def render_rec(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        phrase = self.plain(region.phrase, sample)
        prompt = fill(self.choose_template("rec", rng), phrase=phrase)
        return self.prefix_suffix(prompt, self.objects(sample, [region], [phrase]), sample)

    def render_grounded_caption(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        text = sample.text  # only the grounded phrases are written, so only they must be free of markup
        regions = ordered_spans(sample)
        labels = [self.plain(text[r.span[0] : r.span[1]], sample) for r in regions]
        prompt = fill(self.choose_template("grounded-caption", rng), phrases=SEPARATOR.join(dict.fromkeys(labels)))
        return self.prefix_suffix(prompt, self.objects(sample, regions, labels), sample)

    def decode_record(self, prefix: str, suffix: str, width: int, height: int, record: dict[str, Any]) -> list[Decoded]:
        box = re.compile(LOCS.box_regex())
        out: list[Decoded] = []
        for part in suffix.split(SEPARATOR):
            match = OBJECT.fullmatch(part)
            found = box.fullmatch(match.group(1)) if match else None
            if found is None:
                raise RecordError("bad-box", f"object {part!r} is not '<loc>×4 label'", suffix)
            q = [int(found.group(name)) for name in FIELDS]
            decoded = self.dequantize(q, width, height, record)
            if out and out[-1].phrase == match.group(2):
                out[-1].boxes.append(decoded)
            else:
                out.append(Decoded(match.group(2), [decoded]))
        return out
