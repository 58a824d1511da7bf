"""ODVG (Grounding DINO / MM-Grounding-DINO training JSONL): boxes in original-image pixels, xyxy floats.

FORMATS_NEXT §7.  [code/doc] longzw1997/Open-GroundingDino ``06e33685`` ``data_format.md``; open-mmlab/mmdetection
``091ae036`` ``mmdet/datasets/odvg.py``:

* grounding: ``{"filename", "height", "width", "grounding": {"caption", "regions": [{"bbox", "phrase",
  "tokens_positive": [[start, end], …]}]}}``; mmdet reads ``tokens_positive`` unconditionally, so it is always
  written (character spans into the caption; REC: the whole expression, ``[[0, len]]``);
* detection: ``{…, "detection": {"instances": [{"bbox", "label": int, "category": str}]}}`` plus
  ``label_map.json`` ``{"0": "person", …}`` (``--label-map``, copied beside the shards);
* ``--odvg-dialect mmdet`` (default): one region per phrase with its list of boxes; ``open-groundingdino``:
  one region per box (its ``datasets/odvg.py`` @``0ad46ce7`` pairs boxes and phrases by position).

Coordinates are rounded to 2 decimals (mmdet ``tools/dataset_converters/coco2odvg.py``) after clipping to the
image (``goldg2odvg.py`` clamps x2/y2), so one "step" is 0.01 px.

Not a :class:`~.convention.Convention`: its records are nested structures (regions with spans), not text
with boxes spelled in it, so the writer renders every task itself (:meth:`OdvgWriter.render_seeded`) and
has no columnar path (the pipeline renders it per record).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pyarrow as pa

from .. import boxes as B
from ..errors import InputFileError, RecordError
from ..schema import Box, Region, Sample
from .base import Decoded, Writer, WriterOptions, grounded_regions, ordered_spans, record_size

STEP = 0.01


@dataclass
class OdvgOptions(WriterOptions):
    odvg_dialect: Literal["mmdet", "open-groundingdino"] = "mmdet"
    label_map: str | None = None  # JSON {"0": "name", …}: required by the detection task


class OdvgWriter(Writer):
    name = "odvg"
    description = "Grounding DINO ODVG JSONL: grounding (caption, regions, tokens_positive) or detection, pixel floats"
    tasks = ("grounded-caption", "rec", "detection")
    default_tasks = ("grounded-caption", "rec")  # detection needs --label-map
    Options = OdvgOptions

    def __init__(self, options: OdvgOptions | None = None):
        super().__init__(options)
        self.labels: dict[str, int] | None = None
        if self.options.label_map:
            self.labels = _load_label_map(self.options.label_map)

    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        one = pa.list_(pa.float64())
        bbox = one if self.options.odvg_dialect == "open-groundingdino" else pa.list_(one)
        region = pa.struct(
            [("bbox", bbox), ("phrase", pa.string()), ("tokens_positive", pa.list_(pa.list_(pa.int64())))]
        )
        instance = pa.struct([("bbox", one), ("label", pa.int64()), ("category", pa.string())])
        return [
            ("filename", pa.string()),
            ("grounding", pa.struct([("caption", pa.string()), ("regions", pa.list_(region))])),
            ("detection", pa.struct([("instances", pa.list_(instance))])),
        ]

    def tolerance(self, width: int, height: int) -> tuple[float, float]:
        return STEP, STEP

    # --- rendering ---------------------------------------------------------------------------------------

    def pixels(self, box: Box, sample: Sample) -> list[float]:
        if not B.is_finite(box) or B.is_empty(box):
            raise RecordError("bad-box", f"box {list(box)} is not a valid xyxy box", list(box))
        clipped = B.clip(box, sample.image.width, sample.image.height)
        if B.is_empty(clipped):
            raise RecordError(
                "empty-box", f"box {list(box)} lies outside the {sample.image.width}x{sample.image.height} image"
            )
        return [round(float(v), 2) for v in clipped]

    def regions(self, sample: Sample, pairs: list[tuple[Region, str, list[list[int]]]]) -> list[dict[str, Any]]:
        out = []
        for region, phrase, spans in pairs:
            boxes = [self.pixels(b, sample) for b in region.boxes]
            if self.options.odvg_dialect == "open-groundingdino":
                out += [{"bbox": b, "phrase": phrase, "tokens_positive": spans} for b in boxes]
            else:
                out.append({"bbox": boxes, "phrase": phrase, "tokens_positive": spans})
        return out

    def odvg_record(
        self, sample: Sample, task: str, record_id: str, grounding: dict | None, detection: dict | None
    ) -> dict[str, Any]:
        return {
            **self.common_values(sample, task, record_id),
            "filename": self.image_path(sample),
            "grounding": grounding,
            "detection": detection,
        }

    def render_seeded(self, sample: Sample, task: str, state: int) -> list[dict[str, Any]]:
        """Every task here: no templates, so no random choice (``state`` unused)."""
        if task == "rec":
            out = []
            for index, region in grounded_regions(sample):
                self._check_size(sample)
                phrase = _text(region.phrase, sample)
                regions = self.regions(sample, [(region, phrase, [[0, len(phrase)]])])
                grounding = {"caption": phrase, "regions": regions}
                out.append(self.odvg_record(sample, task, f"{sample.id}/{task}/{index}", grounding, None))
            return out
        if task == "grounded-caption":
            spans = ordered_spans(sample)
            if not spans:
                return []
            self._check_size(sample)
            text = _text(sample.text, sample)
            pairs = [(r, text[r.span[0] : r.span[1]], [list(r.span)]) for r in spans]
            grounding = {"caption": text, "regions": self.regions(sample, pairs)}
            return [self.odvg_record(sample, task, f"{sample.id}/{task}", grounding, None)]
        if task != "detection":
            raise ValueError(f"unknown task {task!r}")
        regions = [r for _, r in grounded_regions(sample)]
        if not regions:
            return []
        self._check_size(sample)
        if self.labels is None:
            raise RecordError(
                "no-label-map", 'the detection task needs a label map: --label-map FILE (JSON {"0": "name", …})'
            )
        instances = []
        for region in regions:
            name = region.category or region.phrase
            if name not in self.labels:
                raise RecordError("unknown-category", f"sample {sample.id}: {name!r} is not in the label map")
            instances += [
                {"bbox": self.pixels(b, sample), "label": self.labels[name], "category": name} for b in region.boxes
            ]
        return [self.odvg_record(sample, task, f"{sample.id}/{task}", None, {"instances": instances})]

    def companion_files(self, shards: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, bytes]:
        if self.labels is None:
            return {}
        return {
            "label_map.json": orjson.dumps(
                {str(i): name for name, i in sorted(self.labels.items(), key=lambda kv: kv[1])}
            )
        }

    # --- parsing -------------------------------------------------------------------------------------------

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        record_size(record)
        grounding, detection = record.get("grounding"), record.get("detection")
        if isinstance(detection, dict):
            return [Decoded(i.get("category"), [_box(i.get("bbox"), record)]) for i in detection.get("instances") or []]
        if not isinstance(grounding, dict) or not isinstance(grounding.get("regions"), list):
            raise RecordError("missing-key", f"record {record.get('id')!r} has neither grounding regions nor detection")
        caption = grounding.get("caption")
        out = []
        for region in grounding["regions"]:
            bbox = region.get("bbox")
            many = bbox if bbox and isinstance(bbox[0], list) else [bbox]
            for start, end in region.get("tokens_positive") or []:
                if not (isinstance(caption, str) and 0 <= start < end <= len(caption)):
                    raise RecordError("bad-span", f"tokens_positive {[start, end]} is outside the caption {caption!r}")
            out.append(Decoded(region.get("phrase"), [_box(b, record) for b in many]))
        return out


def _box(value: Any, record: dict[str, Any]) -> Box:
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, int | float) for v in value)):
        raise RecordError("bad-box", f"record {record.get('id')!r}: bbox {value!r} is not four numbers")
    return [float(v) for v in value]


def _text(text: str | None, sample: Sample) -> str:
    if not isinstance(text, str) or not text.strip():
        raise RecordError("bad-text", f"sample {sample.id}: empty text")
    return text


def _load_label_map(path: str) -> dict[str, int]:
    try:
        with open(path, "rb") as fh:
            data = orjson.loads(fh.read())
    except OSError as exc:
        raise InputFileError(path, f"cannot read the label map: {exc}") from None
    except orjson.JSONDecodeError as exc:
        raise InputFileError(path, f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and k.isdigit() and isinstance(v, str) for k, v in data.items()
    ):
        raise InputFileError(path, "not a label map", '{"0": "person", "1": "car", …}')
    return {name: int(key) for key, name in data.items()}
