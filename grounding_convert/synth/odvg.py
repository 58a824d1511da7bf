"""Grounding DINO ODVG JSONL (FORMATS_NEXT §7): ``od.jsonl`` + ``label_map.json`` or ``vg.jsonl`` or ``ref.jsonl``.

``mode=detection`` (default) writes the OD layout with a label map (instances without ``category`` half
the time, so the label map is needed); ``mode=grounding`` writes captions with ``tokens_positive``;
``mode=referring`` writes mmdet's ``refcoco2odvg.py`` layout.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from .images import write_jpeg
from .refcoco import SIZES

NAMES = ["person", "car", "dog", "bench", "kite"]


def _box(rng: random.Random, width: int, height: int) -> list[float]:
    x1, y1 = round(rng.uniform(0, width / 2), 2), round(rng.uniform(0, height / 2), 2)
    return [x1, y1, round(x1 + rng.uniform(5, width / 2), 2), round(y1 + rng.uniform(5, height / 2), 2)]


def generate(
    output: Path, images: int, seed: int, mode: str = "detection", write_images: bool = True
) -> dict[str, int]:
    rng = random.Random(seed)
    output.mkdir(parents=True, exist_ok=True)
    lines, samples, regions = [], 0, 0
    for i in range(images):
        width, height = SIZES[i % len(SIZES)]
        record: dict = {"filename": f"images/{i:06d}.jpg", "height": height, "width": width}
        if mode == "detection":
            instances = []
            for _ in range(1 + i % 3):
                label = rng.randrange(len(NAMES))
                instance = {"bbox": _box(rng, width, height), "label": label}
                if rng.random() < 0.5:
                    instance["category"] = NAMES[label]
                instances.append(instance)
            record["detection"] = {"instances": instances}
            samples += 1
            regions += len({x["label"] for x in instances})
        elif mode == "grounding":
            a, b = rng.sample(NAMES, 2)
            caption = f"A {a} stands next to the {b}."
            record["grounding"] = {
                "caption": caption,
                "regions": [
                    {"bbox": _box(rng, width, height), "phrase": a, "tokens_positive": [[2, 2 + len(a)]]},
                    {
                        "bbox": [_box(rng, width, height), _box(rng, width, height)],
                        "phrase": f"the {b}",
                        "tokens_positive": [[caption.index(f"the {b}"), caption.index(f"the {b}") + len(b) + 4]],
                    },
                ],
            }
            samples += 1
            regions += 2
        else:
            sentences = [f"the {NAMES[i % 5]} on the left", f"{NAMES[i % 5]} left"]
            record["referring"] = [{"bbox": _box(rng, width, height), "phrase": sentences}]
            samples += 2
            regions += 2
        lines.append(orjson.dumps(record))
        if write_images:
            write_jpeg(output / record["filename"], width, height, [], seed=i)
    name = {"detection": "od.jsonl", "grounding": "vg.jsonl"}.get(mode, "ref.jsonl")
    (output / name).write_bytes(b"\n".join(lines) + b"\n")
    if mode == "detection":
        (output / "label_map.json").write_bytes(orjson.dumps({str(k): v for k, v in enumerate(NAMES)}))
    return {"images": images, "samples": samples, "regions": regions}
