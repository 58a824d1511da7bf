"""RefCOCO / RefCOCO+ / RefCOCOg fixtures in the refer toolkit layout (SOURCES.md §2).

No native refs pickle is obtainable, so this writes one the way the toolkit's Python 2 ``cPickle`` did:
protocol 2 with every text value a py2 ``str`` (UTF-8 bytes, SHORT_BINSTRING/BINSTRING opcodes), which a
Python 3 loader only reads with an ``encoding=`` fallback.  ``instances.json`` follows COCO (info, images,
licenses, annotations, categories with the 80 COCO categories).  Images come from COCO train2014, under
``images/mscoco/images/train2014/`` as refer.py expects.
"""

from __future__ import annotations

import io
import pickle
import random
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from ..errors import UsageError
from .images import write_jpeg

DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}

# Split → weight; unc and umd partition images, google partitions objects (SOURCES.md §2.4).
SPLITS = {
    "unc": {"train": 0.85, "val": 0.076, "testA": 0.04, "testB": 0.034},
    "umd": {"train": 0.84, "val": 0.05, "test": 0.11},
    "google": {"train": 0.8, "val": 0.1, "test": 0.1},
}
GOOGLE_REFCOCOG = {"train": 0.9, "val": 0.1}  # refcocog google released no test split

# The 80 COCO categories: (supercategory, [(id, name), ...]).
# fmt: off
COCO_CATEGORIES: list[tuple[str, list[tuple[int, str]]]] = [
    ("person", [(1, "person")]),
    ("vehicle", [(2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
                 (8, "truck"), (9, "boat")]),
    ("outdoor", [(10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"), (14, "parking meter"),
                 (15, "bench")]),
    ("animal", [(16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"),
                (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe")]),
    ("accessory", [(27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase")]),
    ("sports", [(34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"), (38, "kite"),
                (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"),
                (43, "tennis racket")]),
    ("kitchen", [(44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"),
                 (51, "bowl")]),
    ("food", [(52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
              (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake")]),
    ("furniture", [(62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"),
                   (70, "toilet")]),
    ("electronic", [(72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
                    (77, "cell phone")]),
    ("appliance", [(78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator")]),
    ("indoor", [(84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
                (89, "hair drier"), (90, "toothbrush")]),
]
# fmt: on
CATEGORIES = [{"supercategory": sup, "id": i, "name": n} for sup, items in COCO_CATEGORIES for i, n in items]
CATEGORY_NAME = {c["id"]: c["name"] for c in CATEGORIES}
NON_PERSON = [c["id"] for c in CATEGORIES if c["id"] != 1]

SIZES = [(640, 480), (640, 427), (480, 640), (640, 424), (500, 375), (427, 640), (612, 612)]
COLOURS = ["blue", "red", "white", "black", "green", "yellow", "striped", "dark"]
PLACES = ["left", "right", "middle", "front", "back", "top", "bottom"]
THINGS = ["shirt", "hat", "jacket", "stripes", "spots", "handle", "top"]
VERBS = ["standing", "sitting", "leaning", "lying", "waiting"]
# Non-ASCII words as AMT workers typed them (raw) and their cleaned ASCII forms (sent).
# fmt: off
NON_ASCII = [("café", "cafe"), ("niño", "nino"), ("señora", "senora"), ("naïve", "naive"),
             ("über", "uber"), ("garçon", "garcon"), ("½", "half")]
# fmt: on


# --- a genuine Python-2-style pickle -----------------------------------------------------------------


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol 2 with ``bytes`` written as py2 ``str`` (SHORT_BINSTRING/BINSTRING), not codecs.encode."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _as_py2_str(value: Any) -> Any:
    """Every text value (keys included) → UTF-8 bytes, the py2 ``str`` a cPickle of them holds."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return [_as_py2_str(v) for v in value]
    if isinstance(value, dict):
        return {_as_py2_str(k): _as_py2_str(v) for k, v in value.items()}
    return value


def py2_pickle_bytes(value: Any) -> bytes:
    """Pickle plain data as Python 2's ``cPickle.dump(value, f, 2)`` would with py2 ``str`` text."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(_as_py2_str(value))
    return buffer.getvalue()


def write_py2_pickle(value: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(py2_pickle_bytes(value))


# --- generator ---------------------------------------------------------------------------------------


def _sentence(rng: random.Random, dataset: str, name: str) -> str:
    colour, place, thing = rng.choice(COLOURS), rng.choice(PLACES), rng.choice(THINGS)
    if dataset == "refcoco+":  # RefCOCO+ forbids location words
        return rng.choice([f"{colour} {name}", f"{name} with {colour} {thing}", f"the {name} in {colour}"])
    if dataset == "refcocog":  # longer, full descriptions (~8 words)
        other = rng.choice(["table", "wall", "window", "fence", "car", "tree"])
        return f"a {name} with a {colour} {thing} {rng.choice(VERBS)} near the {other}"
    return rng.choice([f"{place} {name}", f"{colour} {name} on {place}", f"{name} {place}", f"{place}"])


def _raw(rng: random.Random, sent: str) -> tuple[str, str, bool]:
    """(raw, sent, non_ascii): raw as typed (case, abbreviations, accents), sent its cleaned form."""
    if rng.random() < 0.06:
        word, ascii_word = rng.choice(NON_ASCII)
        return f"{sent} {word}".capitalize(), f"{sent} {ascii_word}", True
    style = rng.random()
    if style < 0.2:
        return sent.upper(), sent, False
    if style < 0.35:
        return sent.replace("with", "w"), sent, False
    if style < 0.45:
        return sent.capitalize(), sent, False
    return sent, sent, False


def _box(rng: random.Random, width: int, height: int) -> list[float]:
    """A COCO ``[x, y, w, h]`` with two decimals, inside the image."""
    w = round(rng.uniform(0.05, 0.6) * width, 2)
    h = round(rng.uniform(0.05, 0.6) * height, 2)
    x = round(rng.uniform(0, max(width - w - 0.02, 0.0)), 2)  # margin: x + w stays <= width in floats
    y = round(rng.uniform(0, max(height - h - 0.02, 0.0)), 2)
    return [x, y, w, h]


def _pick_split(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def generate(
    output: Path,
    images: int,
    seed: int,
    dataset: str = "refcoco",
    split_by: str | None = None,
    write_images: bool = True,
    **options: Any,
) -> dict[str, int]:
    """Write ``<output>/<dataset>/refs(<split_by>).p``, ``instances.json`` and the train2014 images.

    Returns counts: images, refs, annotations, samples (= sentences = regions = boxes), non_ascii_raw and
    ``samples_<split>`` per split, so a test can compare a reader's output with them.
    """
    if options:
        raise UsageError(f"refcoco synth has no option(s) {', '.join(sorted(options))}")
    if dataset not in DEFAULT_SPLIT_BY:
        raise UsageError(f"refcoco synth makes refcoco, refcoco+ or refcocog, not {dataset!r}")
    split_by = split_by or DEFAULT_SPLIT_BY[dataset]
    if split_by not in SPLITS:
        raise UsageError(f"refcoco synth knows split_by unc, umd or google, not {split_by!r}")
    weights = GOOGLE_REFCOCOG if (dataset, split_by) == ("refcocog", "google") else SPLITS[split_by]
    rng = random.Random(f"refcoco/{dataset}/{split_by}/{seed}")
    output = Path(output)
    folder = output / dataset
    image_dir = output / "images" / "mscoco" / "images" / "train2014"

    image_ids = sorted(rng.sample(range(1, 582_000), images))
    coco_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    ann_id = rng.randrange(1000, 5000)
    sent_id = 0
    for image_id in image_ids:
        width, height = rng.choice(SIZES)
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        coco_images.append({
            "license": rng.randint(1, 8), "file_name": file_name,
            "coco_url": f"http://mscoco.org/images/{image_id}", "height": height, "width": width,
            "date_captured": f"2013-11-{rng.randint(10, 28)} {rng.randint(10, 23)}:{rng.randint(10, 59)}:00",
            "flickr_url": f"http://farm{rng.randint(1, 9)}.staticflickr.com/{image_id}_z.jpg", "id": image_id,
        })  # fmt: skip
        image_split = _pick_split(rng, weights)
        image_anns = []
        for _ in range(rng.randint(1, 4)):
            if image_split == "testA":  # testA refers only to people, testB only to other objects
                category = 1
            elif image_split == "testB":
                category = rng.choice(NON_PERSON)
            else:
                category = 1 if rng.random() < 0.5 else rng.choice(NON_PERSON)
            x, y, w, h = _box(rng, width, height)
            ann_id += rng.randint(1, 40)
            ann = {
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]], "area": round(w * h, 3),
                "iscrowd": 0, "image_id": image_id, "bbox": [x, y, w, h], "category_id": category,
                "id": ann_id,
            }  # fmt: skip
            annotations.append(ann)
            image_anns.append(ann)
        for ann in rng.sample(image_anns, rng.randint(1, len(image_anns))):
            split = _pick_split(rng, weights) if split_by == "google" else image_split
            sentences = []
            for _ in range(rng.randint(1, 3)):
                raw, sent, non_ascii = _raw(rng, _sentence(rng, dataset, CATEGORY_NAME[ann["category_id"]]))
                sentences.append({"tokens": sent.split(), "raw": raw, "sent_id": sent_id, "sent": sent})
                counts["non_ascii_raw"] += non_ascii
                counts[f"samples_{split}"] += 1
                sent_id += 1
            refs.append({
                "sent_ids": [s["sent_id"] for s in sentences],
                "file_name": f"COCO_train2014_{image_id:012d}_{rng.randint(0, 40)}.jpg",
                "ann_id": ann["id"], "ref_id": len(refs), "image_id": image_id, "split": split,
                "sentences": sentences, "category_id": ann["category_id"],
            })  # fmt: skip
        if write_images:
            boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                     for a in image_anns]  # fmt: skip
            write_jpeg(image_dir / file_name, width, height, boxes, seed=image_id)

    instances = {
        "info": {"description": f"synthetic {dataset} fixture (grounding_convert)", "version": "1.0",
                 "year": 2014, "contributor": "grounding_convert synth", "date_created": "2015-01-27"},
        "images": coco_images,
        "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": i, "name": "CC BY 2.0"}
                     for i in range(1, 9)],
        "annotations": annotations,
        "categories": CATEGORIES,
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instances.json").write_bytes(orjson.dumps(instances))
    write_py2_pickle(refs, folder / f"refs({split_by}).p")
    samples = sent_id
    return {
        "images": len(coco_images),
        "refs": len(refs),
        "annotations": len(annotations),
        "categories": len(CATEGORIES),
        "samples": samples,
        "regions": samples,
        "boxes": samples,
        **dict(sorted(counts.items())),
        "non_ascii_raw": counts["non_ascii_raw"],
    }
