"""Synthetic Visual Genome in its native layout (SOURCES §1.2): image_data, region_descriptions, objects.

Key spellings and key order follow the real v1.2 files (``version="1.0"`` writes the v1.0 spellings,
and ``id`` instead of ``image_id`` in image_data).  The quirks a reader must survive are planted on
purpose: trailing spaces in phrases, boxes partly outside the image (to be clipped) and boxes wholly
outside or with zero size (to be rejected).  The returned counts say how many of each, so a test can
predict a reader's output exactly.  The JSON arrays are written element by element, so a 100 MB file
costs no more memory than a small one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, TextIO

from .. import boxes
from ..errors import UsageError
from .images import write_jpeg

NOUNS = ["man", "woman", "dog", "car", "tree", "clock", "street", "sign", "bike", "window", "shirt", "café"]
ADJECTIVES = ["red", "green", "tall", "small", "wooden", "parked", "white", "old", "shiny"]
VERBS = ["is next to", "is behind", "stands near", "is on", "leans on", "faces"]
SYNSETS = {
    "man": "man.n.01",
    "dog": "dog.n.01",
    "car": "car.n.01",
    "tree": "tree.n.01",
    "clock": "clock.n.01",
}


def generate(
    output: Path,
    images: int,
    seed: int,
    version: str = "1.2",
    write_images: bool = True,
    regions_per_image: int = 50,
    objects_per_image: int = 20,
    coco_ids: dict[int, int] | str | None = None,
    flickr_ids: dict[int, int] | str | None = None,
) -> dict[str, int]:
    """Write ``images`` images' worth of VG annotations into ``output`` and return what was written.

    Counts: ``images``, ``regions`` / ``objects`` (records written), ``samples`` / ``object_samples``
    (records a reader keeps), ``rejected`` / ``object_rejected`` (empty-box), ``clipped`` /
    ``object_clipped`` (kept after clipping), ``trailing_spaces`` (phrases with stray whitespace),
    ``boxes`` (= samples: one box per region sample), ``image_files``.

    ``coco_ids`` / ``flickr_ids`` give chosen images (VG id → id, or ``"1:581857,4:1000092795"`` from the
    CLI) the ``coco_id`` / ``flickr_id`` that image_data.json records for photos shared with COCO and
    Flickr30K; every other image has null, so a fixture can plant known overlaps with evaluation sets.
    """
    coco, flickr = _id_map(coco_ids), _id_map(flickr_ids)
    if version not in ("1.0", "1.2"):
        raise ValueError(f"version must be '1.0' or '1.2', not {version!r}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    counts = dict.fromkeys(
        ["images", "regions", "objects", "samples", "object_samples", "rejected", "object_rejected"]
        + ["clipped", "object_clipped", "trailing_spaces", "boxes", "image_files"],
        0,
    )
    v10 = version == "1.0"
    region_id, object_id = 1000, 5000
    with (
        open(output / "image_data.json", "w", encoding="utf-8") as image_data,
        open(output / "region_descriptions.json", "w", encoding="utf-8") as regions_file,
        open(output / "objects.json", "w", encoding="utf-8") as objects_file,
    ):
        writers = [_ArrayWriter(f) for f in (image_data, regions_file, objects_file)]
        for image_id in range(1, images + 1):
            width, height = rng.randint(64, 640), rng.randint(64, 480)
            folder = "VG_100K_2" if image_id % 7 == 0 else "VG_100K"
            url = f"https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg"
            entry = {"width": width, "url": url, "height": height, "image_id": image_id}
            if v10:
                entry = {"width": width, "url": url, "height": height, "id": image_id}
            writers[0].write({**entry, "coco_id": coco.get(image_id), "flickr_id": flickr.get(image_id)})
            counts["images"] += 1

            # image 3 has no regions at all: a reader must simply yield nothing for it
            n_regions = 0 if image_id == 3 else rng.randint(1, 2 * regions_per_image - 1)
            regions, drawn = [], []
            for _ in range(n_regions):
                region_id += 1
                x, y, w, h, fate = _box(rng, width, height)
                phrase = _phrase(rng)
                if rng.random() < 0.07:
                    phrase += rng.choice([" ", "  ", "\n", " \n"])
                    counts["trailing_spaces"] += 1
                if v10:
                    record = {"image": image_id, "height": h, "width": w, "x": x, "y": y, "phrase": phrase}
                    regions.append({**record, "id": region_id})
                else:
                    regions.append(
                        {
                            "region_id": region_id,
                            "width": w,
                            "height": h,
                            "image_id": image_id,
                            "phrase": phrase,
                        }
                        | {"y": y, "x": x}
                    )
                counts["regions"] += 1
                _tally(counts, fate, "")
                if fate != "rejected" and len(drawn) < 8:
                    drawn.append(boxes.clip(boxes.xywh_to_xyxy(x, y, w, h), width, height))
            writers[1].write({"regions": regions, "id": image_id})

            objects = []
            for _ in range(rng.randint(0, 2 * objects_per_image)):
                object_id += 1
                x, y, w, h, fate = _box(rng, width, height)
                noun = rng.choice(NOUNS)
                names = [noun] if rng.random() < 0.9 else [noun, rng.choice(NOUNS)]
                if v10:
                    objects.append({"h": h, "names": names, "w": w, "y": y, "x": x, "id": object_id})
                else:
                    synsets = [SYNSETS[noun]] if noun in SYNSETS else []
                    objects.append(
                        {"synsets": synsets, "h": h, "object_id": object_id, "names": names, "w": w} | {"y": y, "x": x}
                    )
                counts["objects"] += 1
                _tally(counts, fate, "object_")
            writers[2].write(
                {"objects": objects, "id": image_id} if v10 else {"image_id": image_id, "objects": objects}
            )

            if write_images:
                write_jpeg(output / folder / f"{image_id}.jpg", width, height, drawn, seed=seed + image_id)
                counts["image_files"] += 1
        for writer in writers:
            writer.close()
    counts["boxes"] = counts["samples"]
    return counts


def _id_map(value: dict[int, int] | str | None) -> dict[int, int]:
    """``{1: 581857}`` or ``"1:581857,2:98304"`` → ``{1: 581857, 2: 98304}``."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {int(k): int(v) for k, v in value.items()}
    pairs = [item.split(":", 1) for item in str(value).split(",") if item.strip()]
    try:
        return {int(k): int(v) for k, v in pairs}
    except ValueError as exc:
        raise UsageError(f"ids must be VG_ID:ID pairs separated by commas, not {value!r}") from exc


def _box(rng: random.Random, width: int, height: int) -> tuple[int, int, int, int, str]:
    """An integer x, y, w, h and its fate for a reader: 'kept', 'clipped' or 'rejected'."""
    roll = rng.random()
    if roll < 0.01:  # wholly outside (like region 5456063, y + height < 0) or zero-sized
        x, y, w, h = rng.choice(
            [(5, -rng.randint(60, 900), 20, 30), (width + 3, 4, 10, 10), (2, 3, 0, 12), (2, 3, 12, 0)]
        )
    elif roll < 0.03:  # partly outside: negative origin or running past the right/bottom border
        w, h = rng.randint(8, width // 2), rng.randint(8, height // 2)
        x = rng.choice([-rng.randint(1, 5), width - w + rng.randint(1, 5)])
        y = rng.choice([-rng.randint(1, 5), rng.randint(0, height - h)])
    else:
        w, h = rng.randint(1, width), rng.randint(1, height)
        x, y = rng.randint(0, width - w), rng.randint(0, height - h)
    box = boxes.xywh_to_xyxy(x, y, w, h)
    if boxes.is_empty(box) or boxes.is_empty(boxes.clip(box, width, height)):
        return x, y, w, h, "rejected"
    return x, y, w, h, "kept" if boxes.is_inside(box, width, height) else "clipped"


def _tally(counts: dict[str, int], fate: str, prefix: str) -> None:
    if fate == "rejected":
        counts[f"{prefix}rejected"] += 1
        return
    counts[f"{prefix}samples"] += 1
    if fate == "clipped":
        counts[f"{prefix}clipped"] += 1


def _phrase(rng: random.Random) -> str:
    return (
        f"{rng.choice(['the', 'a'])} {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} "
        f"{rng.choice(VERBS)} the {rng.choice(NOUNS)}"
    )


class _ArrayWriter:
    """Writes a JSON array one element at a time, with the ``", "`` separators of the real files."""

    def __init__(self, handle: TextIO):
        self._handle = handle
        self._first = True
        handle.write("[")

    def write(self, element: dict[str, Any]) -> None:
        if not self._first:
            self._handle.write(", ")
        self._first = False
        self._handle.write(json.dumps(element, ensure_ascii=True))

    def close(self) -> None:
        self._handle.write("]")
