"""The canonical sample (DESIGN §1): the one shape every reader produces and every writer consumes.

Boxes are always ``[x1, y1, x2, y2]`` floats in absolute pixels of the *original* image, 0-based, with
continuous edges (a box touching the right border has ``x2 == width``).  Readers convert into this,
writers convert out of it, and :mod:`grounding_convert.boxes` owns the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

Box = list[float]
Scalar = str | int | float | bool | None

DATASETS = ("visual_genome", "refcoco", "refcoco+", "refcocog", "visual7w", "flickr30k_entities", "grit")
ROLES = ("answer", "choice")
# Namespaces of image identities across datasets (DESIGN §7 "Images have identities"): the same photo is a
# COCO train2014 image in RefCOCO*, may be a Visual Genome image (image_data.json coco_id / flickr_id) and
# a Flickr30K image.  Adding a namespace adds one nullable field to the Arrow struct below.
IMAGE_KEYS = ("coco", "flickr", "vg")


def image_keys(**ids: object) -> dict[str, int]:
    """``image_keys(coco=581857, flickr="1000092795", vg=None)`` → ``{"coco": 581857, "flickr": 1000092795}``.

    What a reader writes in one line: nulls, bools, negatives and non-numeric values are dropped (a key is
    only ever claimed when the data says so), digit strings become ints.
    """
    keys: dict[str, int] = {}
    for name, value in ids.items():
        if name not in IMAGE_KEYS:
            raise ValueError(f"unknown image key namespace {name!r} (known: {', '.join(IMAGE_KEYS)})")
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
            keys[name] = value
    return keys


@dataclass(slots=True)
class ImageRef:
    """Where the image lives (relative to the dataset's image root) and its original size."""

    file: str
    id: str | None = None
    width: int | None = None
    height: int | None = None
    url: str | None = None
    # identities of this photo in other datasets' id spaces ({"coco": 581857, "vg": 1}); see IMAGE_KEYS
    keys: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Region:
    """One grounded phrase: where it sits in the text and which boxes it refers to."""

    phrase: str
    span: tuple[int, int] | None = None
    boxes: list[Box] = field(default_factory=list)
    category: str | None = None
    score: float | None = None
    role: str | None = None


@dataclass(slots=True)
class Sample:
    """One piece of text about one image, with the regions the text grounds."""

    id: str
    dataset: str
    split: str | None
    image: ImageRef
    text: str
    answer: str | None = None
    regions: list[Region] = field(default_factory=list)
    meta: dict[str, Scalar] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The Arrow/JSONL row: DESIGN §1 field names; ``meta`` as a JSON object string.

        ``meta`` is a JSON string rather than an Arrow map because its values are mixed scalars and
        ``datasets`` cannot load Arrow map columns; the text round-trips exactly.
        """
        return {
            "id": self.id,
            "dataset": self.dataset,
            "split": self.split,
            "image": {
                "file": self.image.file,
                "id": self.image.id,
                "width": self.image.width,
                "height": self.image.height,
                "url": self.image.url,
                "keys": {name: self.image.keys.get(name) for name in IMAGE_KEYS},
            },
            "text": self.text,
            "answer": self.answer,
            "regions": [
                {
                    "phrase": r.phrase,
                    "span": list(r.span) if r.span is not None else None,
                    "boxes": [list(map(float, b)) for b in r.boxes],
                    "category": r.category,
                    "score": r.score,
                    "role": r.role,
                }
                for r in self.regions
            ],
            "meta": orjson.dumps(self.meta, option=orjson.OPT_SORT_KEYS).decode(),
        }

    @classmethod
    def from_record(cls, row: dict[str, Any]) -> Sample:
        """Inverse of :meth:`to_record` (accepts ``meta`` as a JSON string or an object).

        Rows written before ``image.keys`` existed have no ``keys``: they read back with none.
        """
        image = row["image"]
        meta = row.get("meta") or {}
        if isinstance(meta, str | bytes):
            meta = orjson.loads(meta)
        return cls(
            id=row["id"],
            dataset=row["dataset"],
            split=row.get("split"),
            image=ImageRef(
                file=image["file"],
                id=image.get("id"),
                width=image.get("width"),
                height=image.get("height"),
                url=image.get("url"),
                keys={k: v for k, v in (image.get("keys") or {}).items() if v is not None},
            ),
            text=row["text"],
            answer=row.get("answer"),
            regions=[
                Region(
                    phrase=r["phrase"],
                    span=tuple(r["span"]) if r.get("span") is not None else None,
                    boxes=[[float(v) for v in b] for b in (r.get("boxes") or [])],
                    category=r.get("category"),
                    score=r.get("score"),
                    role=r.get("role"),
                )
                for r in (row.get("regions") or [])
            ],
            meta=dict(meta),
        )


IMAGE_TYPE = pa.struct(
    [
        ("file", pa.string()),
        ("id", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("url", pa.string()),
        ("keys", pa.struct([(name, pa.int64()) for name in IMAGE_KEYS])),
    ]
)

REGION_TYPE = pa.struct(
    [
        ("phrase", pa.string()),
        ("span", pa.list_(pa.int64())),
        ("boxes", pa.list_(pa.list_(pa.float64()))),
        ("category", pa.string()),
        ("score", pa.float64()),
        ("role", pa.string()),
    ]
)

SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("image", IMAGE_TYPE),
        ("text", pa.string()),
        ("answer", pa.string()),
        ("regions", pa.list_(REGION_TYPE)),
        ("meta", pa.string()),
    ]
)


# --- sample ids (stable, documented in README "Sample ids") -------------------------------------------


def flickr30k_id(image_id: str, caption_index: int) -> str:
    return f"flickr30k_entities/{image_id}/{caption_index}"


def visual_genome_id(image_id: int | str, region_id: int | str) -> str:
    return f"visual_genome/{image_id}/{region_id}"


def refcoco_id(dataset: str, split_by: str, ref_id: int | str, sent_id: int | str) -> str:
    return f"{dataset}/{split_by}/{ref_id}/{sent_id}"


def visual7w_id(qa_id: int | str) -> str:
    return f"visual7w/{qa_id}"


def grit_id(record_id: int | str) -> str:
    return f"grit/{record_id}"
