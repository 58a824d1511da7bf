"""Grounding DINO ODVG JSONL (FORMATS_NEXT §7, §11): detection, grounding and referring lines.

One JSON object per line with ``filename``, ``height``, ``width`` and one of (boxes are original-image
pixels, xyxy, floats):

* ``detection: {"instances": [{"bbox", "label": int, "category": str}]}``: one sample like the ``coco``
  reader's (one region per label, all its boxes, text ``"car . person ."``); the phrase is ``category``,
  else ``label_map[str(label)]`` from ``label_map.json`` (``-O label_map=PATH``; default: a
  ``*label_map*.json`` beside the input).
* ``grounding: {"caption", "regions": [{"bbox": box | [box, …], "phrase": str | [str], "tokens_positive"}]}``:
  one sample, the caption.  ``tokens_positive`` spans (mmdet requires them, Open-GroundingDino ignores
  them) give one region per span, as in the ``mdetr`` reader; without them the phrase is looked up in the
  caption (first occurrence at or after the previous region's), else the region has no span.  A phrase
  list as long as the box list pairs by position (Open-GroundingDino's ``--dialect``); otherwise each phrase
  gets every box.
* ``referring: [{"bbox", "phrase": [sentences]}]`` (mmdet ``refcoco2odvg.py``): one sample per sentence,
  the whole sentence grounded to the box, as the ``refcoco`` reader does.

Partitions are byte ranges of whole lines (about ``lines_per_partition`` lines each), found by seeking.
Ids: ``odvg/<file stem>/<line number>`` (``…/<k>`` for the k-th referring sentence).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..boxes import clip, is_empty, is_inside
from ..errors import Filtered, InputFileError, Note, Reject, UsageError
from ..option_types import PER_PARTITION, bounded
from ..schema import Box, ImageRef, Region, Sample
from .base import Partition, Reader, ReaderOptions, ReadItem

EXPECTED = "ODVG JSONL: one object per line with filename, height, width and detection/grounding/referring"
BYTES_PER_LINE = 400


@dataclass
class OdvgOptions(ReaderOptions):
    label_map: str | None = None  # label_map.json ({"0": "person", …}); default: *label_map*.json beside the input
    lines_per_partition: int = bounded(20_000, PER_PARTITION)


class _Problem(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _box(value: Any, width: int, height: int) -> tuple[Box, bool]:
    if not (isinstance(value, list) and len(value) == 4 and all(_number(v) for v in value)):
        raise _Problem("bad-box", f"bbox {value!r} is not four finite numbers")
    box = [float(v) for v in value]
    if is_empty(box):
        raise _Problem("empty-box", f"bbox {value} has no area (x2 <= x1 or y2 <= y1)")
    if is_inside(box, width, height):
        return box, False
    fixed = clip(box, width, height)
    if is_empty(fixed):
        raise _Problem("empty-box", f"bbox {value} lies outside the {width}x{height} image")
    return fixed, True


def _boxes(value: Any, width: int, height: int) -> tuple[list[Box], int]:
    """One box or a list of boxes (mmdet) → boxes and how many were clipped."""
    many = value if isinstance(value, list) and value and all(isinstance(v, list) for v in value) else [value]
    out, clipped = [], 0
    for item in many:
        box, was = _box(item, width, height)
        out.append(box)
        clipped += was
    return out, clipped


class OdvgReader(Reader):
    """Grounding DINO ODVG JSONL (detection, grounding, referring): one sample per line (per sentence)."""

    name = "odvg"
    dataset = "odvg"
    description = "Grounding DINO ODVG .jsonl (detection + label_map.json, grounding, referring)"
    Options = OdvgOptions
    options: OdvgOptions

    def input_files(self, input_path: str) -> list[Path]:
        path = Path(input_path)
        if not path.is_file():
            return []
        label_map = self._label_map_path(path)
        return [path] + ([label_map] if label_map else [])

    def _label_map_path(self, path: Path) -> Path | None:
        if self.options.label_map:
            given = Path(self.options.label_map)
            if not given.is_file():
                raise InputFileError(str(given), "not found", 'an ODVG label map JSON ({"0": "name", …})')
            return given
        found = sorted(p for p in path.parent.glob("*label_map*.json") if p.is_file())
        return found[0] if len(found) == 1 else None

    @classmethod
    def detect(cls, path: str) -> bool:
        p = Path(path)
        if not p.is_file() or p.suffix != ".jsonl":
            return False
        try:
            with open(p, "rb") as handle:
                first = orjson.loads(handle.readline())
        except (OSError, orjson.JSONDecodeError):
            return False
        return (
            isinstance(first, dict)
            and "filename" in first
            and bool({"detection", "grounding", "referring"} & set(first))
        )

    def plan(self, input_path: str) -> list[Partition]:
        path = Path(input_path)
        if not path.is_file():
            raise InputFileError(str(path), "does not exist" if not path.exists() else "is not a file", EXPECTED)
        if self.options.split:
            raise UsageError("ODVG files have no split field; leave out --split for the odvg reader")
        size = self.options.lines_per_partition
        if not isinstance(size, int) or size < 1:
            raise UsageError(f"option 'lines-per-partition' must be a positive integer, not {size!r}")
        label_map = self._label_map_path(path)
        if label_map is not None:
            load_label_map(label_map)  # whole-file problems surface at plan time
        total = path.stat().st_size
        if total == 0:
            raise InputFileError(str(path), "is empty", EXPECTED)
        starts = [0]
        target = size * BYTES_PER_LINE
        with open(path, "rb") as handle:
            while starts[-1] + target < total:
                handle.seek(starts[-1] + target)
                handle.readline()  # to the next line start
                position = handle.tell()
                if position >= total:
                    break
                starts.append(position)
        ends = starts[1:] + [total]
        params = {"file": str(path), "label_map": str(label_map) if label_map else None}
        return [
            Partition(i, f"lines-{i:05d}", str(path), {**params, "start": s, "end": e})
            for i, (s, e) in enumerate(zip(starts, ends, strict=True))
        ]

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        params = partition.params
        source = params["file"]
        labels = load_label_map(Path(params["label_map"])) if params["label_map"] else {}
        stem = Path(source).stem
        with open(source, "rb") as handle:
            handle.seek(params["start"])
            line_number = _line_number(handle, params["start"]) if params["start"] else 0
            position = params["start"]
            while position < params["end"]:
                raw = handle.readline()
                if not raw:
                    break
                position += len(raw)
                line_number += 1
                if not raw.strip():
                    continue
                where = f"line {line_number}"
                try:
                    record = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    text = raw[:200].decode("utf-8", "replace")
                    yield Reject("bad-record", f"{source}: {where} is not JSON ({exc})", source, where, text)
                    continue
                try:
                    yield from self._record(record, labels, f"odvg/{stem}/{line_number}", source, where)
                except _Problem as exc:
                    yield Reject(exc.reason, f"{source}: {where}: {exc.message}", source, where, record)

    def _record(
        self, record: Any, labels: dict[str, str], sample_id: str, source: str, where: str
    ) -> Iterator[ReadItem]:
        if not isinstance(record, dict):
            raise _Problem("wrong-type", f"is a {type(record).__name__}, not an object")
        file_name = record.get("filename")
        if not isinstance(file_name, str) or not file_name:
            raise _Problem("missing-key" if "filename" not in record else "wrong-type", "has no filename string")
        width, height = record.get("width"), record.get("height")
        if not all(_number(v) and v > 0 and float(v).is_integer() for v in (width, height)):
            raise _Problem("bad-size", f"width/height {width!r}/{height!r}")
        image = ImageRef(file=file_name, id=None, width=int(width), height=int(height))
        # our odvg writer's records carry every mode's column, the unused ones null (one Arrow schema)
        if record.get("detection") is not None:
            yield from self._detection(record["detection"], labels, image, sample_id, source, where)
        elif record.get("grounding") is not None:
            yield from self._grounding(record["grounding"], image, sample_id)
        elif record.get("referring") is not None:
            yield from self._referring(record["referring"], image, sample_id)
        else:
            raise _Problem("missing-key", "has none of detection, grounding, referring")

    def _detection(self, value: Any, labels: dict[str, str], image: ImageRef, sample_id: str, source: str, where: str):
        instances = value.get("instances") if isinstance(value, dict) else None
        if not isinstance(instances, list):
            raise _Problem("wrong-type", "detection has no instances list")
        found: dict[tuple[int, str], list[Box]] = {}
        clipped = 0
        for k, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise _Problem("wrong-type", f"instance {k} is not an object")
            label = instance.get("label")
            name = instance.get("category")
            if not isinstance(name, str) or not name.strip():
                name = labels.get(str(label)) if isinstance(label, int) and not isinstance(label, bool) else None
            if not isinstance(name, str) or not name.strip():
                raise _Problem(
                    "unknown-reference", f"instance {k}: label {label!r} has no category nor label map entry"
                )
            box, was = _box(instance.get("bbox"), image.width, image.height)  # type: ignore[arg-type]
            clipped += was
            key = (label if isinstance(label, int) and not isinstance(label, bool) else 1 << 40, name.strip())
            found.setdefault(key, []).append(box)
        if not found:
            yield Filtered("no-annotations", source, where)
            return
        regions, text = [], ""
        for (_, name), boxes in sorted(found.items()):
            if text:
                text += " . "
            regions.append(Region(phrase=name, span=(len(text), len(text) + len(name)), boxes=boxes, category=name))
            text += name
        if clipped:
            yield Note("clipped-box", clipped)
        yield Sample(
            id=sample_id,
            dataset="odvg",
            split=None,
            image=image,
            text=text + " .",
            regions=regions,
            meta={"mode": "detection"},
        )

    def _grounding(self, value: Any, image: ImageRef, sample_id: str) -> Iterator[ReadItem]:
        if not isinstance(value, dict):
            raise _Problem("wrong-type", "grounding is not an object")
        caption, items = value.get("caption"), value.get("regions")
        if not isinstance(caption, str) or not caption.strip():
            raise _Problem("bad-text" if isinstance(caption, str) else "missing-key", "grounding has no caption text")
        if not isinstance(items, list):
            raise _Problem("wrong-type", "grounding has no regions list")
        regions: list[Region] = []
        clipped = 0
        cursor = 0
        for k, item in enumerate(items):
            if not isinstance(item, dict):
                raise _Problem("wrong-type", f"region {k} is not an object")
            boxes, was = _boxes(item.get("bbox"), image.width, image.height)  # type: ignore[arg-type]
            clipped += was
            phrases = item.get("phrase")
            phrases = [phrases] if isinstance(phrases, str) else phrases
            if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases):
                raise _Problem("wrong-type", f"region {k} phrase {item.get('phrase')!r} is not text")
            spans = item.get("tokens_positive")
            if spans is not None:
                for span in _spans(spans, caption, k):
                    regions.append(Region(phrase=caption[span[0] : span[1]], span=span, boxes=list(boxes)))
                continue
            paired = len(phrases) == len(boxes) and len(phrases) > 1
            for j, phrase in enumerate(phrases):
                phrase = phrase.strip()
                at = caption.find(phrase, cursor)
                if at < 0:
                    at = caption.find(phrase)
                span = (at, at + len(phrase)) if at >= 0 else None
                if at >= 0:
                    cursor = at + len(phrase)
                regions.append(Region(phrase=phrase, span=span, boxes=[boxes[j]] if paired else list(boxes)))
        if not regions:
            raise _Problem("bad-record", "grounding has no regions")
        regions.sort(key=lambda r: (r.span is None, r.span or (0, 0)))
        if clipped:
            yield Note("clipped-box", clipped)
        yield Sample(
            id=sample_id,
            dataset="odvg",
            split=None,
            image=image,
            text=caption,
            regions=regions,
            meta={"mode": "grounding"},
        )

    def _referring(self, value: Any, image: ImageRef, sample_id: str) -> Iterator[ReadItem]:
        items = value if isinstance(value, list) else value.get("instances") if isinstance(value, dict) else None
        if not isinstance(items, list):
            raise _Problem("wrong-type", "referring is not a list")
        out: list[ReadItem] = []
        for k, item in enumerate(items):
            if not isinstance(item, dict):
                raise _Problem("wrong-type", f"referring item {k} is not an object")
            boxes, clipped = _boxes(item.get("bbox"), image.width, image.height)  # type: ignore[arg-type]
            sentences = item.get("phrase", item.get("exp"))
            sentences = [sentences] if isinstance(sentences, str) else sentences
            if not isinstance(sentences, list) or not all(isinstance(s, str) and s.strip() for s in sentences):
                raise _Problem("wrong-type", f"referring item {k} phrase {item.get('phrase')!r} is not text")
            if clipped:
                out.append(Note("clipped-box", clipped))
            for j, sentence in enumerate(sentences):
                text = sentence.strip()
                out.append(
                    Sample(
                        id=f"{sample_id}/{k}/{j}",
                        dataset="odvg",
                        split=None,
                        image=image,
                        text=text,
                        regions=[Region(phrase=text, span=(0, len(text)), boxes=[list(b) for b in boxes])],
                        meta={"mode": "referring"},
                    )
                )
        yield from out


def _spans(value: Any, caption: str, k: int) -> list[tuple[int, int]]:
    if not isinstance(value, list) or not value:
        raise _Problem("bad-span", f"region {k} tokens_positive {value!r} is not a non-empty list")
    out = []
    for span in value:
        ok = (
            isinstance(span, list)
            and len(span) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
        )
        if not ok or not 0 <= span[0] < span[1] <= len(caption) or not caption[span[0] : span[1]].strip():
            raise _Problem("bad-span", f"region {k} span {span!r} does not fit the {len(caption)}-char caption")
        out.append((span[0], span[1]))
    return list(dict.fromkeys(out))


def load_label_map(path: Path) -> dict[str, str]:
    expected = 'an ODVG label map: a JSON object {"0": "person", …}'
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise InputFileError(str(path), f"cannot be read ({exc})", expected) from None
    except orjson.JSONDecodeError as exc:
        raise InputFileError(str(path), f"is not valid JSON ({exc})", expected) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InputFileError(str(path), "is not an object of label → name strings", expected)
    return {str(k): v.strip() for k, v in data.items()}


def _line_number(handle: Any, start: int) -> int:
    """Lines before byte ``start`` (counted once per partition; keeps reject positions as line numbers)."""
    handle.seek(0)
    count = 0
    remaining = start
    while remaining > 0:
        chunk = handle.read(min(remaining, 1 << 20))
        if not chunk:
            break
        count += chunk.count(b"\n")
        remaining -= len(chunk)
    handle.seek(start)
    return count
