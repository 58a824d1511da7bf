"""MDETR / GoldG ``final_*.json`` (FORMATS_NEXT §10): COCO layout plus a caption per image entry.

Flickr30K (``final_flickr_separateGT_*.json``), GQA (``final_mixed_train_no_coco.json``) and the RefCOCO*
files (``final_refexp_*.json``) share one layout, read by one reader: every ``images[]`` entry is one
caption about one picture (``caption``, ``file_name``, ``width``, ``height``) and is one sample; its
annotations carry an ``[x, y, w, h]`` box and ``tokens_positive``, a list of ``[start, end)`` character
spans of the caption that the box grounds.

**Several spans per annotation.**  The canonical Region has one span.  Each distinct span becomes one
region holding the boxes of every annotation that lists it: a GQA object named twice in a question
("the man … he") gives two regions with the same box, so both mentions are grounded in a grounded caption
and each is a REC phrase.  The alternatives lose something: keeping only the first span drops the other
mention; a hull of the spans would ground the words between them.  Regions are in text order (span start,
then end).  An annotation is rejected on its own (bad box, span outside the caption) and the entry keeps
the rest; an entry with no usable annotation is filtered (``no-annotations``).

Ids: ``mdetr/<file stem>/<image entry id>``; ``meta`` keeps ``dataset_name``, ``original_img_id`` and
``sentence_id`` when the entry has them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import Filtered, Note
from ..schema import ImageRef, Region, Sample
from . import coco_index
from .base import ReadItem
from .coco_layout import CocoLayoutReader, Problem, annotation_box, is_int

META_KEYS = ("dataset_name", "original_img_id", "original_id", "sentence_id")


def spans_of(annotation: dict[str, Any], caption: str) -> list[tuple[int, int]]:
    """The annotation's ``tokens_positive`` as spans checked against the caption."""
    spans = annotation.get("tokens_positive")
    ann_id = annotation.get("id")
    if spans is None:
        raise Problem("missing-key", f"annotation {ann_id} has no tokens_positive")
    if not isinstance(spans, list) or not spans:
        raise Problem("bad-span", f"annotation {ann_id} tokens_positive {spans!r} is not a non-empty list")
    out = []
    for span in spans:
        if not (isinstance(span, list) and len(span) == 2 and all(is_int(v) for v in span)):
            raise Problem("bad-span", f"annotation {ann_id} span {span!r} is not [start, end]")
        start, end = span
        if not 0 <= start < end <= len(caption):
            raise Problem("bad-span", f"annotation {ann_id} span {span} is outside the {len(caption)}-char caption")
        if not caption[start:end].strip():
            raise Problem("bad-span", f"annotation {ann_id} span {span} covers only spaces")
        out.append((start, end))
    return out


class MdetrReader(CocoLayoutReader):
    """MDETR / GoldG final_*.json (Flickr30K, GQA, RefCOCO*): one sample per caption-image entry."""

    name = "mdetr"
    dataset = "mdetr"
    description = "MDETR/GoldG final_*.json (COCO layout + caption + tokens_positive): one sample per entry"
    expected = "an MDETR final_*.json object: images with captions, annotations with tokens_positive"

    @classmethod
    def detect(cls, path: str) -> bool:
        head = coco_index.json_object_head(path)
        return (b'"tokens_positive"' in head or b'"caption"' in head) and (
            b'"images"' in head or b'"annotations"' in head
        )

    def samples(
        self,
        ref: ImageRef,
        image: dict[str, Any],
        annotations: list[tuple[int, Any]],
        context: Any,
        source: str,
        split: str | None,
    ) -> Iterator[ReadItem]:
        where = f"image {ref.id}"
        caption = image.get("caption")
        if not isinstance(caption, str):
            kind = "missing-key" if "caption" not in image else "wrong-type"
            yield self.image_reject(Problem(kind, f"{where} has no caption string"), image, source, split)
            return
        if not caption.strip():
            yield self.image_reject(Problem("bad-text", f"{where} has an empty caption"), image, source, split)
            return
        boxes_of: dict[tuple[int, int], list[tuple[tuple, list[float]]]] = {}
        for n, ann in annotations:
            try:
                spans = spans_of(ann, caption)
                box, clipped = annotation_box(ann, ref.width, ref.height)  # type: ignore[arg-type]
            except Problem as exc:
                yield self.annotation_reject(exc, n, ann, source, split)
                continue
            if clipped:
                yield Note("clipped-box")
            ann_id = ann.get("id")
            order = (0, ann_id, n) if is_int(ann_id) else (1, 0, n)
            for span in dict.fromkeys(spans):
                boxes_of.setdefault(span, []).append((order, box))
        if not boxes_of:
            yield Filtered("no-annotations", source, where, split=split)
            return
        regions = [
            Region(phrase=caption[s:e], span=(s, e), boxes=[b for _, b in sorted(boxes_of[(s, e)], key=lambda x: x[0])])
            for s, e in sorted(boxes_of)
        ]
        meta = {key: image[key] for key in META_KEYS if isinstance(image.get(key), int | str)}
        yield Sample(
            id=f"mdetr/{Path(source).stem}/{ref.id}",
            dataset="mdetr",
            split=split,
            image=ref,
            text=caption,
            regions=regions,
            meta=meta,
        )

    @staticmethod
    def image_reject(problem: Problem, image: dict[str, Any], source: str, split: str | None):
        from ..errors import Reject

        where = f"image {image.get('id')}"
        return Reject(problem.reason, f"{source}: {where}: {problem.message}", source, where, image, split)
