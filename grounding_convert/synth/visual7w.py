"""Synthetic Visual7W in the native layout (SOURCES §3), since no native file is obtainable.

Writes ``dataset_v7w_telling.json``, ``dataset_v7w_pointing.json``, the grounding annotations (in the
``dataset_v7w_grounding_annotations/`` folder, or beside with ``grounding_layout="beside"``), tiny
``images/v7w_<image_id>.jpg`` files and a Visual Genome style ``image_data.json`` holding the sizes.
Some boxes start at negative x/y as in the real data; the returned ``clipped`` count is what a reader
should report.  Pointing QAs omit ``image_id``, as the real ones do.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from .images import write_jpeg

OBJECTS = [
    "dog", "cat", "man", "woman", "table", "chair", "window", "car", "tree", "cup", "plate", "bus", "sign",
    "lamp", "horse", "kite", "umbrella", "bench", "clock", "shirt",
]  # fmt: skip
COLOURS = ["Red.", "Blue.", "Green.", "White.", "Black.", "Brown.", "Yellow."]
TELLING = [
    ("what", "What color is the {o}?", None),
    ("where", "Where is the {o}?", "Next to the {p}."),
    ("who", "Who is near the {o}?", "A person."),
    ("why", "Why is the {o} here?", "To be used."),
    ("when", "When was the photo taken?", "During the day."),
    ("how", "How many {o}s are there?", "Two."),
]
POINTING = ["Which {o} is in the picture?", "Which object is closest to the camera?", "Which is the {o}?"]


def generate(
    output: Path,
    images: int,
    seed: int,
    grounding_layout: str = "subfolder",
    write_images: bool = True,
    **_: Any,
) -> dict[str, int]:
    """Write ``images`` images with 4–8 telling and 2–4 pointing QAs each; return the counts."""
    rng = random.Random(seed)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(
        ["images", "telling_qas", "pointing_qas", "telling_regions", "telling_boxes", "pointing_regions"], 0
    )
    counts["clipped"] = 0
    telling_images, pointing_images, all_boxes, telling_boxes, pointing_answers, vg = [], [], [], [], [], []
    qa_id, box_id = 100000, 5000000
    for i in range(images):
        image_id = 2300000 + i * 3 + rng.randrange(3)
        width, height = rng.randrange(40, 97), rng.randrange(40, 97)
        split = rng.choices(["train", "val", "test"], weights=[6, 2, 2])[0]
        objects = []
        for name in rng.sample(OBJECTS, rng.randrange(4, 7)):
            w, h = rng.randrange(6, width // 2), rng.randrange(6, height // 2)
            x, y = rng.randrange(0, width - w), rng.randrange(0, height - h)
            negative = rng.random() < 0.06
            if negative:
                x, y = -rng.randrange(1, 4), -rng.randrange(0, 3)
            box_id += 1
            objects.append({"box_id": box_id, "name": name, "x": x, "y": y, "width": w, "height": h})
            all_boxes.append(objects[-1])
        if write_images:
            drawn = [[max(o["x"], 0), max(o["y"], 0), o["x"] + o["width"], o["y"] + o["height"]]
                     for o in objects]  # fmt: skip
            write_jpeg(output / "images" / f"v7w_{image_id}.jpg", width, height, drawn, seed=image_id)
        vg.append({"width": width, "height": height, "url": f"https://example.org/{image_id}.jpg",
                   "coco_id": None, "flickr_id": None, "image_id": image_id})  # fmt: skip
        record = {"image_id": image_id, "filename": f"v7w_{image_id}.jpg", "split": split}
        telling_pairs = []
        for _ in range(rng.randrange(4, 9)):
            qa_id += 1
            kind, question, answer = rng.choice(TELLING)
            first, second = rng.sample(objects, 2)
            answer = (answer or rng.choice(COLOURS)).format(p=second["name"])
            choices = rng.sample([c for c in COLOURS if c != answer], 3)
            text = question.format(o=first["name"])
            telling_pairs.append({"qa_id": qa_id, "image_id": image_id, "question": text, "answer": answer,
                                  "multiple_choices": choices, "type": kind})  # fmt: skip
            grounded = [first] if "{o}" in question else []
            if "Next to" in answer:
                grounded.append(second)
            if grounded and rng.random() < 0.2:
                grounded.append(first)  # the same object named twice: one region, two boxes
            names = set()
            for obj in grounded:
                box_id += 1
                telling_boxes.append({**obj, "box_id": box_id, "qa_id": qa_id})
                counts["telling_boxes"] += 1
                counts["clipped"] += obj["x"] < 0 or obj["y"] < 0
                names.add(obj["name"])
            counts["telling_regions"] += len(names)
        pointing_pairs = []
        for _ in range(rng.randrange(2, 5)):
            qa_id += 1
            candidates = rng.sample(objects, 4)
            question = rng.choice(POINTING).format(o=candidates[0]["name"])
            wrong = [c["box_id"] for c in candidates[1:]]
            pointing_pairs.append({"qa_id": qa_id, "question": question, "answer": candidates[0]["box_id"],
                                   "multiple_choices": wrong, "type": "which"})  # fmt: skip
            pointing_answers.append({**candidates[0], "qa_id": qa_id})
            counts["pointing_regions"] += 4
            counts["clipped"] += sum(c["x"] < 0 or c["y"] < 0 for c in candidates)
        counts["images"] += 1
        counts["telling_qas"] += len(telling_pairs)
        counts["pointing_qas"] += len(pointing_pairs)
        telling_images.append({**record, "qa_pairs": telling_pairs})
        pointing_images.append({**record, "qa_pairs": pointing_pairs})
    grounding = output / "dataset_v7w_grounding_annotations" if grounding_layout == "subfolder" else output
    grounding.mkdir(parents=True, exist_ok=True)
    _dump(output / "dataset_v7w_telling.json", {"images": telling_images})
    _dump(output / "dataset_v7w_pointing.json", {"images": pointing_images, "boxes": all_boxes})
    _dump(grounding / "v7w_telling_answers.json", {"boxes": telling_boxes})
    _dump(grounding / "v7w_pointing_answers.json", {"boxes": pointing_answers})
    _dump(output / "image_data.json", vg)
    counts["qas"] = counts["samples"] = counts["telling_qas"] + counts["pointing_qas"]
    counts["regions"] = counts["telling_regions"] + counts["pointing_regions"]
    counts["boxes"] = counts["telling_boxes"] + counts["pointing_regions"]
    return counts


def _dump(path: Path, value: Any) -> None:
    path.write_bytes(orjson.dumps(value))
