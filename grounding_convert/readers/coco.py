"""COCO-style detection ``instances_*.json`` (COCO, Objects365, LVIS, V3Det) as grounding samples (FORMATS_NEXT §10).

One sample per image.  Its regions are the categories present, in category-id order, each with all its
boxes (``[x, y, w, h]`` → xyxy, ordered by annotation id, so the sample does not depend on the order of
``annotations`` in the file); ``phrase`` is the category name.  The text lists the phrases the way
Grounding DINO's ODVG loader builds a detection caption, ``"person . car ."`` (Open-GroundingDino
``datasets/odvg.py``: ``' . '.join(phrases) + ' .'``), and every region's span points at its name there.

No writer has a detection task yet (DESIGN §3), so these samples feed ``rec`` / ``reg`` (one record per
category, all its boxes) and ``grounded-caption`` (the category list with each name's boxes).

Options (``-O key=value``):

* ``phrase=name|synonym``: LVIS categories carry ``synonyms``; ``synonym`` picks one per (image, category)
  from a hash of both ids (deterministic, varied across images); LVIS's ``snake_case_(sense)`` names are
  spelled with spaces (``aerosol_can`` → ``aerosol can``) either way, ``category`` keeps the raw name.
* ``crowd=drop|keep``: ``iscrowd`` boxes (a group of objects in one box) are dropped by default, as
  mmdet's ``goldg2odvg.py`` does, and counted (note ``crowd-box-dropped``); ``keep`` adds them to their
  category's region and flags them in ``meta["crowd_boxes"]`` (``"region:box"`` pairs).
* ``dataset=``: the ``dataset`` field and id prefix (default from the file name: objects365, lvis, v3det,
  else coco).

Images without any usable box are counted as filtered (``no-annotations``).  The file is never held in
memory: annotations are joined to images through a plan-time spill (:mod:`.coco_index`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import Filtered, InputFileError, Note
from ..schema import ImageRef, Region, Sample
from . import coco_index
from .base import ReadItem
from .coco_layout import CocoLayoutOptions, CocoLayoutReader, Problem, annotation_box, is_int

KNOWN_DATASETS = ("objects365", "lvis", "v3det")


@dataclass
class CocoOptions(CocoLayoutOptions):
    phrase: Literal["name", "synonym"] = "name"
    crowd: Literal["drop", "keep"] = "drop"
    dataset: str | None = None


@dataclass(frozen=True)
class Category:
    name: str
    phrases: tuple[str, ...]  # the name (and synonyms) as phrases


def dataset_of(path: Path) -> str:
    lowered = path.name.lower()
    for name in KNOWN_DATASETS:
        if name in lowered or (name == "objects365" and ("objv" in lowered or "o365" in lowered)):
            return name
    return "coco"


def spoken(name: str) -> str:
    """LVIS ``snake_case`` names as words (``aerosol_can`` → ``aerosol can``); other names unchanged."""
    return name.replace("_", " ").strip()


class CocoReader(CocoLayoutReader):
    """COCO-layout detection instances (COCO, Objects365, LVIS, V3Det): one sample per image."""

    name = "coco"
    dataset = "coco"
    description = "COCO-style instances_*.json (COCO, Objects365, LVIS, V3Det): one sample per image"
    Options = CocoOptions
    options: CocoOptions
    expected = "a COCO instances JSON object with images, annotations and categories lists"

    @classmethod
    def detect(cls, path: str) -> bool:
        """A .json object whose first 64 KB hold COCO keys and no caption/tokens_positive (that is MDETR)."""
        head = coco_index.json_object_head(path)
        if not head:
            return False
        if b'"tokens_positive"' in head or b'"caption"' in head:
            return False
        return b'"images"' in head or b'"annotations"' in head or b'"categories"' in head

    def check_categories(self, path: Path, categories: list[Any]) -> None:
        if not any(isinstance(c, dict) and is_int(c.get("id")) for c in categories):
            raise InputFileError(str(path), "has no usable categories (objects with id and name)", self.expected)

    def context(self, categories: list[Any]) -> dict[int, Category]:
        table: dict[int, Category] = {}
        for c in categories:
            if not (isinstance(c, dict) and is_int(c.get("id")) and isinstance(c.get("name"), str)):
                continue
            if not spoken(c["name"]):
                continue
            synonyms = [spoken(s) for s in c.get("synonyms") or [] if isinstance(s, str) and spoken(s)]
            table[c["id"]] = Category(c["name"], tuple(dict.fromkeys([spoken(c["name"]), *synonyms])))
        return table

    def samples(
        self,
        ref: ImageRef,
        image: dict[str, Any],
        annotations: list[tuple[int, Any]],
        context: dict[int, Category],
        source: str,
        split: str | None,
    ) -> Iterator[ReadItem]:
        dataset = self.options.dataset or dataset_of(Path(source))
        keep_crowd = self.options.crowd == "keep"
        # category id → [(sort key, box, crowd)]
        found: dict[int, list[tuple[tuple, list[float], bool]]] = {}
        for n, ann in annotations:
            category_id = ann.get("category_id")
            try:
                if "category_id" not in ann:
                    raise Problem("missing-key", f"annotation {ann.get('id')} has no category_id")
                if not is_int(category_id) or category_id not in context:
                    raise Problem("unknown-reference", f"category_id {category_id!r} is not in categories")
                box, clipped = annotation_box(ann, ref.width, ref.height)  # type: ignore[arg-type]
            except Problem as exc:
                yield self.annotation_reject(exc, n, ann, source, split)
                continue
            crowd = bool(ann.get("iscrowd"))
            if crowd and not keep_crowd:
                yield Note("crowd-box-dropped")
                continue
            if clipped:
                yield Note("clipped-box")
            if crowd:
                yield Note("crowd-box-kept")
            ann_id = ann.get("id")
            order = (0, ann_id, n) if is_int(ann_id) else (1, 0, n)
            found.setdefault(category_id, []).append((order, box, crowd))
        if not found:
            yield Filtered("no-annotations", source, f"image {ref.id}", split=split)
            return
        regions: list[Region] = []
        crowd_marks: list[str] = []
        text = ""
        for category_id in sorted(found):
            category = context[category_id]
            phrase = self._phrase(category, ref.id, category_id)
            if text:
                text += " . "
            span = (len(text), len(text) + len(phrase))
            text += phrase
            boxes = sorted(found[category_id], key=lambda item: item[0])
            for j, (_, _, crowd) in enumerate(boxes):
                if crowd:
                    crowd_marks.append(f"{len(regions)}:{j}")
            regions.append(Region(phrase=phrase, span=span, boxes=[b for _, b, _ in boxes], category=category.name))
        meta: dict[str, Any] = {"image_id": image.get("id")}
        if crowd_marks:
            meta["crowd_boxes"] = ",".join(crowd_marks)
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):  # LVIS (FORMATS_NEXT: UNVERIFIED use)
            if isinstance(image.get(key), list):
                meta[key] = ",".join(str(v) for v in image[key])
        yield Sample(
            id=f"{dataset}/{ref.id}",
            dataset=dataset,
            split=split,
            image=ref,
            text=text + " .",
            regions=regions,
            meta=meta,
        )

    def _phrase(self, category: Category, image_id: str | None, category_id: int) -> str:
        if self.options.phrase == "name" or len(category.phrases) == 1:
            return category.phrases[0]
        pick = zlib.crc32(f"{image_id}/{category_id}".encode()) % len(category.phrases)
        return category.phrases[pick]
