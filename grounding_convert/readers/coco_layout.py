"""What the ``coco`` and ``mdetr`` readers share: a COCO-layout JSON joined per image through a spill.

Both read one ``{"images": [...], "annotations": [...], "categories": [...]}`` file whose annotations
point at images by ``image_id`` with ``[x, y, w, h]`` pixel boxes (FORMATS_NEXT §10).  ``plan`` builds (or
reuses) the spill of :mod:`.coco_index` and makes one partition per spilled slice of images, plus one for
annotations that name no image (each a ``unknown-reference`` reject).  ``read`` joins a slice in memory and
hands each image with its annotations, in file order, to the subclass's ``samples``.

Records and accounting: a sample is made from one image entry.  An annotation that cannot be used (no or
bad ``bbox``, zero area, unknown category, outside the image) is rejected on its own with its reason, and
the image keeps its other annotations; so ``read`` counts images plus rejected annotations.
"""

from __future__ import annotations

import math
import re
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from ..boxes import clip, is_empty, is_inside, xywh_to_xyxy
from ..errors import InputFileError, Reject, UsageError
from ..option_types import PER_PARTITION, bounded
from ..schema import Box, ImageRef
from . import coco_index
from .base import Partition, Reader, ReaderOptions, ReadItem

SPLIT_TOKEN = re.compile(r"(?:^|[_\-.])((?:train|val|test|minival|valminusminival)(?:\d{4})?)(?=$|[_\-.])")


@dataclass
class CocoLayoutOptions(ReaderOptions):
    images_per_partition: int = bounded(5000, PER_PARTITION)
    cache_dir: str | None = None  # where the spill goes (default $GROUNDING_CONVERT_CACHE/coco-index)


class Problem(Exception):
    """One unusable image or annotation: becomes a Reject with this reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def split_of(path: Path) -> str | None:
    """The split a file name announces (``instances_val2017`` → ``val2017``, ``lvis_v1_train`` → ``train``)."""
    match = SPLIT_TOKEN.search(path.stem)
    return match.group(1) if match else None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def image_ref(image: Any) -> ImageRef:
    """``images[]`` entry → ImageRef; ``file_name``, or for LVIS (no file_name) the last two parts of ``coco_url``."""
    if not isinstance(image, dict):
        raise Problem("wrong-type", f"image entry is a {type(image).__name__}, not an object")
    image_id = image.get("id")
    if not (is_int(image_id) or isinstance(image_id, str)):
        raise Problem(
            "missing-key" if "id" not in image else "wrong-type", f"image entry has no usable id: {image_id!r}"
        )
    width, height = image.get("width"), image.get("height")
    if not all(is_number(v) and v > 0 and float(v).is_integer() for v in (width, height)):
        raise Problem("bad-size", f"image {image_id} has width/height {width!r}/{height!r}")
    url = image.get("coco_url") if isinstance(image.get("coco_url"), str) else None
    file_name = image.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        if url is None:
            raise Problem("missing-key", f"image {image_id} has no file_name (nor coco_url)")
        parts = PurePosixPath(urlparse(url).path).parts
        file_name = "/".join(parts[-2:])  # http://images.cocodataset.org/train2017/x.jpg → train2017/x.jpg
    return ImageRef(file=file_name, id=str(image_id), width=int(width), height=int(height), url=url)


def annotation_box(annotation: dict[str, Any], width: int, height: int) -> tuple[Box, bool]:
    """COCO ``[x, y, w, h]`` → canonical xyxy clipped to the image, and whether it was clipped."""
    bbox = annotation.get("bbox")
    ann_id = annotation.get("id")
    if bbox is None:
        raise Problem("missing-key", f"annotation {ann_id} has no bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        raise Problem("bad-box", f"annotation {ann_id} bbox {bbox!r} is not four finite numbers")
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise Problem("empty-box", f"annotation {ann_id} bbox {bbox} has no area")
    box = xywh_to_xyxy(*bbox)
    if is_inside(box, width, height):
        return box, False
    box = clip(box, width, height)
    if is_empty(box):
        raise Problem("empty-box", f"annotation {ann_id} bbox {bbox} lies outside the {width}x{height} image")
    return box, True


class CocoLayoutReader(Reader):
    """Base of readers of one COCO-layout JSON file; subclasses turn (image, annotations) into samples."""

    Options = CocoLayoutOptions
    options: CocoLayoutOptions
    expected: str = "a COCO-layout JSON object with images, annotations and categories lists"

    def _file(self, input_path: str) -> Path:
        path = Path(input_path)
        if not path.exists():
            raise InputFileError(str(path), "does not exist", self.expected)
        if not path.is_file():
            raise InputFileError(str(path), "is not a file", self.expected)
        return path

    def input_files(self, input_path: str) -> list[Path]:
        path = Path(input_path)
        return [path] if path.is_file() else []

    def plan(self, input_path: str) -> list[Partition]:
        path = self._file(input_path)
        size = self.options.images_per_partition
        if not is_int(size) or size < 1:
            raise UsageError(f"option 'images-per-partition' must be a positive integer, not {size!r}")
        split = split_of(path)
        if self.options.split is not None and self.options.split != split:
            raise UsageError(f"{path} holds split {split!r}, not {self.options.split!r} (one split per file)")
        index = coco_index.ensure(path, size, self.options.cache_dir, self.expected)
        self.check_categories(path, index.categories)
        common = {"file": str(path), "spill": str(index.folder), "split": split}
        parts = [Partition(i, f"images-{i:05d}", str(path), {**common, "part": i}) for i in range(len(index.images))]
        if index.orphans:
            parts.append(Partition(len(parts), "orphans", str(path), {**common, "part": -1}))
        return parts

    def check_categories(self, path: Path, categories: list[Any]) -> None:
        """Whole-file check of ``categories`` (subclasses that need names refuse a file without them)."""

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        params = partition.params
        folder, source, split = Path(params["spill"]), params["file"], params["split"]
        index = coco_index.load(folder)
        if index is None:
            raise InputFileError(str(folder), "the annotation index of this input vanished; run again", self.expected)
        if params["part"] < 0:
            for line in coco_index.read_lines(index.orphans_file):
                ann = line.get("ann")
                image_id = ann.get("image_id") if isinstance(ann, dict) else None
                yield Reject(
                    "unknown-reference",
                    f"{source}: annotations[{line['n']}] points at image_id {image_id!r}, which is not in images",
                    source,
                    f"annotations[{line['n']}]",
                    raw=ann,
                    split=split,
                )
            return
        by_image: dict[Any, list[tuple[int, Any]]] = {}
        rejects: list[Reject] = []
        for line in coco_index.read_lines(index.annotations_file(params["part"])):
            if "bad" in line:
                where = f"annotations[{line['n']}]"
                rejects.append(Reject("bad-text", f"{source}: {where} {line['bad']}", source, where, split=split))
                continue
            by_image.setdefault(line["ann"]["image_id"], []).append((line["n"], line["ann"]))
        yield from rejects
        context = self.context(index.categories)
        for line in coco_index.read_lines(index.images_file(params["part"])):
            where = f"images[{line['n']}]"
            if "bad" in line:
                yield Reject("bad-text", f"{source}: {where} {line['bad']}", source, where, split=split)
                continue
            image = line["image"]
            image_id = image.get("id") if isinstance(image, dict) else None
            if line["dup"]:
                yield Reject(
                    "duplicate-id", f"{source}: {where} repeats image id {image_id!r}", source, where, image, split
                )
                continue
            annotations = by_image.get(image_id, [])
            try:
                ref = image_ref(image)
            except Problem as exc:
                yield Reject(exc.reason, f"{source}: {where}: {exc.message}", source, where, image, split)
                continue
            yield from self.samples(ref, image, annotations, context, source, split)

    def context(self, categories: list[Any]) -> Any:
        """Per-partition lookups built from ``categories`` (e.g. id → name)."""
        return None

    @abstractmethod
    def samples(
        self,
        ref: ImageRef,
        image: dict[str, Any],
        annotations: list[tuple[int, Any]],
        context: Any,
        source: str,
        split: str | None,
    ) -> Iterator[ReadItem]:
        """Samples (and rejects, notes) of one image entry and its annotations (``(position, annotation)``)."""

    @staticmethod
    def annotation_reject(problem: Problem, n: int, annotation: Any, source: str, split: str | None) -> Reject:
        where = f"annotations[{n}]"
        return Reject(problem.reason, f"{source}: {where}: {problem.message}", source, where, annotation, split)
