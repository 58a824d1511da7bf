"""RefCOCO Hub mirrors as Parquet (FORMATS_NEXT §12): ``variant=jxu124`` (default) or ``variant=lmms-lab``.

jxu124: ``data/{train,validation,test,testB}-00000-of-00001.parquet`` with the card's columns, ``bbox``
pixel xyxy and ``raw_anns.bbox`` the same box as xywh.  lmms-lab: ``data/{val,testA}-00000-of-00001.parquet``
with embedded JPEG bytes and ``bbox`` xywh.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from .images import jpeg_bytes
from .refcoco import SIZES

JXU_SPLITS = {"train": "train", "validation": "val", "test": "testA", "testB": "testB"}
LMMS_SPLITS = ("val", "testA")
QUESTION = "Please carefully observe the area circled in the image and come up with a caption for the area."


def _xywh(rng: random.Random, width: int, height: int) -> list[float]:
    w, h = round(rng.uniform(10, width / 2), 2), round(rng.uniform(10, height / 2), 2)
    return [round(rng.uniform(0, width - w), 2), round(rng.uniform(0, height - h), 2), w, h]


def generate(
    output: Path, images: int, seed: int, variant: str = "jxu124", write_images: bool = False
) -> dict[str, int]:
    """``write_images`` is accepted for symmetry: lmms-lab embeds its images, jxu124 has none."""
    rng = random.Random(seed)
    folder = output / "data"
    folder.mkdir(parents=True, exist_ok=True)
    splits = list(JXU_SPLITS) if variant == "jxu124" else list(LMMS_SPLITS)
    rows: dict[str, list[dict]] = {s: [] for s in splits}
    samples = 0
    for i in range(images):
        width, height = SIZES[i % len(SIZES)]
        hub = splits[i % len(splits)]
        xywh = _xywh(rng, width, height)
        image_id = 580000 + i
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        sentences = [f"man in red shirt {i}", f"left guy {i}"][: 1 + i % 2]
        samples += len(sentences)
        if variant == "jxu124":
            rows[hub].append(
                {
                    "sent_ids": [i * 10 + j for j in range(len(sentences))],
                    "file_name": f"COCO_train2014_{image_id:012d}_{i}.jpg",
                    "ann_id": 400000 + i,
                    "ref_id": i,
                    "image_id": image_id,
                    "split": JXU_SPLITS[hub],
                    "sentences": [
                        {"raw": s.upper(), "sent": s, "sent_id": i * 10 + j, "tokens": s.split()}
                        for j, s in enumerate(sentences)
                    ],
                    "category_id": 1,
                    "raw_anns": orjson.dumps(
                        {"bbox": xywh, "image_id": image_id, "id": 400000 + i, "category_id": 1}
                    ).decode(),
                    "raw_image_info": orjson.dumps(
                        {"file_name": file_name, "height": height, "width": width, "id": image_id}
                    ).decode(),
                    "raw_sentences": orjson.dumps(sentences).decode(),
                    "image_path": f"coco/train2014/{file_name}",
                    "bbox": [xywh[0], xywh[1], round(xywh[0] + xywh[2], 2), round(xywh[1] + xywh[3], 2)],
                    "captions": sentences,
                    "global_image_id": f"coco.{image_id}",
                    "anns_id": str(400000 + i),
                }
            )
        else:
            rows[hub].append(
                {
                    "question_id": str(i),
                    "image": {"bytes": jpeg_bytes(width, height, seed=i), "path": None},
                    "question": QUESTION,
                    "answer": sentences,
                    "segmentation": [xywh[0], xywh[1], xywh[0] + xywh[2], xywh[1]],
                    "bbox": xywh,
                    "iscrowd": 0,
                    "file_name": file_name,
                }
            )
    for hub, items in rows.items():
        if items:
            pq.write_table(pa.Table.from_pylist(items), folder / f"{hub}-00000-of-00001.parquet")
    return {"rows": images, "samples": samples}
