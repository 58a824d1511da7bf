"""COCO-layout detection files (COCO / Objects365 shape) and MDETR ``final_*.json`` files.

``generate`` writes ``annotations/instances_train2017.json`` with the 80 COCO categories, a few crowd
boxes and, with ``shuffle=true`` (the Objects365 shape), annotations in random order rather than grouped
by image.  The JSON is written incrementally, so benchmark-sized files
(``annotations_per_image`` × ``images``, written record by record); JPEGs only with ``write_images``.

``generate_mdetr`` writes ``final_flickr_separateGT_train.json``: captions with ``tokens_positive`` spans,
one annotation per box, some phrases with several boxes and some boxes with two spans.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import orjson

from .images import write_jpeg
from .refcoco import CATEGORIES, SIZES


def _box(rng: random.Random, width: int, height: int) -> list[float]:
    w = round(rng.uniform(8, width / 2), 2)
    h = round(rng.uniform(8, height / 2), 2)
    return [round(rng.uniform(0, width - w), 2), round(rng.uniform(0, height - h), 2), w, h]


def generate(
    output: Path,
    images: int,
    seed: int,
    annotations_per_image: int = 6,
    shuffle: bool = True,
    write_images: bool = True,
    crowd_every: int = 17,
) -> dict[str, int]:
    """Columns drawn with numpy, written one record at a time: a 5M-annotation file needs ~300 MB, not GBs."""
    rng = np.random.default_rng(seed)
    folder = output / "annotations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "instances_train2017.json"
    total = images * annotations_per_image
    sizes = np.array([SIZES[i % len(SIZES)] for i in range(min(images, len(SIZES)))] or [(1, 1)], dtype=np.float64)
    owner = np.repeat(np.arange(images), annotations_per_image)
    wh = sizes[owner % len(sizes)] if total else np.zeros((0, 2))
    bw = np.round(rng.uniform(8, wh[:, 0] / 2), 2)
    bh = np.round(rng.uniform(8, wh[:, 1] / 2), 2)
    bx = np.round(rng.uniform(0, 1, total) * (wh[:, 0] - bw), 2)
    by = np.round(rng.uniform(0, 1, total) * (wh[:, 1] - bh), 2)
    category_ids = np.array([c["id"] for c in CATEGORIES])[rng.integers(0, len(CATEGORIES), total)]
    ann_ids = np.arange(1, total + 1)
    crowd = ann_ids % crowd_every == 0
    order = rng.permutation(total) if shuffle else np.arange(total)
    head = {
        "info": {"description": "synthetic COCO-layout file", "version": "1.0", "year": 2017},
        "licenses": [
            {
                "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
                "id": 1,
                "name": "Attribution-NonCommercial-ShareAlike License",
            }
        ],
    }
    with open(path, "wb") as handle:
        handle.write(orjson.dumps(head)[:-1] + b',"images":[')
        for i in range(images):
            width, height = SIZES[i % len(SIZES)]
            image_id = 100000 + i * 7
            name = f"{image_id:012d}.jpg"
            entry = {
                "license": 1,
                "file_name": name,
                "coco_url": f"http://images.cocodataset.org/train2017/{name}",
                "height": height,
                "width": width,
                "date_captured": "2013-11-14 11:18:45",
                "id": image_id,
            }
            handle.write((b"," if i else b"") + orjson.dumps(entry))
            if write_images:
                mine = slice(i * annotations_per_image, (i + 1) * annotations_per_image)
                boxes = np.stack([bx[mine], by[mine], bx[mine] + bw[mine], by[mine] + bh[mine]], axis=1).tolist()
                write_jpeg(output / "train2017" / name, width, height, boxes, seed=image_id)
        handle.write(b'],"annotations":[')
        for k, a in enumerate(order.tolist()):
            x, y, w, h = float(bx[a]), float(by[a]), float(bw[a]), float(bh[a])
            ann = {
                "segmentation": [[x, y, x + w, y, x, y + h]],
                "area": round(w * h, 2),
                "iscrowd": int(crowd[a]),
                "image_id": 100000 + int(owner[a]) * 7,
                "bbox": [x, y, w, h],
                "category_id": int(category_ids[a]),
                "id": int(ann_ids[a]),
            }
            handle.write((b"," if k else b"") + orjson.dumps(ann))
        handle.write(b'],"categories":' + orjson.dumps(CATEGORIES) + b"}")
    kept = ~crowd
    pairs = np.unique(owner[kept] * 1000 + category_ids[kept]).size if total else 0
    used = np.unique(owner[kept]).size if total else 0
    return {
        "images": images,
        "annotations": total,
        "crowd": int(crowd.sum()),
        "samples": int(used),
        "regions": int(pairs),
    }


WORDS = [("a man", "man"), ("a dog", "dog"), ("the red car", "car"), ("two children", "child"), ("a bench", "bench")]


def generate_mdetr(output: Path, images: int, seed: int, write_images: bool = True) -> dict[str, int]:
    """``final_flickr_separateGT_train.json`` in MDETR's layout (caption per image entry, tokens_positive)."""
    rng = random.Random(seed)
    output.mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    regions = 0
    for i in range(images):
        width, height = SIZES[i % len(SIZES)]
        first, second = rng.sample(WORDS, 2)
        caption = f"{first[0].capitalize()} is next to {second[0]} and {first[0].split()[-1]} looks happy ."
        a_end = len(first[0])
        b_start = caption.index(second[0])
        again = caption.index(f" {first[0].split()[-1]} looks") + 1
        entry = {
            "file_name": f"{3000000 + i}.jpg",
            "height": height,
            "width": width,
            "id": i,
            "caption": caption,
            "dataset_name": "flickr",
            "tokens_negative": [[0, len(caption)]],
            "sentence_id": 0,
            "original_img_id": 3000000 + i,
            "tokens_positive_eval": [],
        }
        entries.append(entry)
        spans_a = [[0, a_end], [again, again + len(first[0].split()[-1])]]
        boxes_a = [_box(rng, width, height)]
        boxes_b = [_box(rng, width, height) for _ in range(1 + i % 2)]
        for bbox in boxes_a:
            annotations.append(
                {
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                    "image_id": i,
                    "category_id": 1,
                    "id": len(annotations),
                    "bbox": bbox,
                    "tokens_positive": spans_a,
                }
            )
        for bbox in boxes_b:
            annotations.append(
                {
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                    "image_id": i,
                    "category_id": 1,
                    "id": len(annotations),
                    "bbox": bbox,
                    "tokens_positive": [[b_start, b_start + len(second[0])]],
                }
            )
        regions += 3
        if write_images:
            write_jpeg(output / "images" / entry["file_name"], width, height, [], seed=i)
    data = {
        "images": entries,
        "annotations": annotations,
        "categories": [{"supercategory": "object", "id": 1, "name": "object"}],
    }
    (output / "final_flickr_separateGT_train.json").write_bytes(orjson.dumps(data))
    return {"images": images, "samples": images, "annotations": len(annotations), "regions": regions}
