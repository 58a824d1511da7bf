"""Synthetic Flickr30K Entities in the exact published layout (SOURCES.md §4), plus tiny real JPEGs.

Writes ``Sentences/<id>.txt`` (5 captions with ``[/EN#<chain>/<type> words]`` markup),
``Annotations/<id>.xml`` (tab-indented, no XML declaration, no trailing newline), the ``train.txt`` /
``val.txt`` / ``test.txt`` id lists and ``flickr30k-images/<id>.jpg``.  It exercises the quirks a reader
must get right: multi-name box objects, chains with several boxes, scene/nobndbox flag objects (both
flags set too), two-type mentions, chain-0 ``notvisual`` mentions, XML chains no caption mentions,
boxes touching the right/bottom border and a few UTF-8 curly quotes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from .. import boxes as B
from ..errors import UsageError
from .images import write_jpeg

SPLITS = ("train", "val", "test")
TYPES = ("people", "clothing", "bodyparts", "animals", "vehicles", "instruments", "scene", "other")
COMBOS = (("vehicles", "scene"), ("bodyparts", "people"), ("people", "scene"), ("animals", "people"))
NOUNS = {
    "people": ("man", "woman", "child", "girl", "boy", "people", "climbers", "couple"),
    "clothing": ("shirt", "hat", "jacket", "sunglasses", "dress", "helmet"),
    "bodyparts": ("arm", "hand", "face", "hair", "mouth"),
    "animals": ("dog", "horse", "cat", "bird"),
    "vehicles": ("car", "bike", "boat", "bus", "traffic"),
    "instruments": ("guitar", "drum", "violin"),
    "scene": ("street", "beach", "park", "field", "crowd"),
    "other": ("rock", "bench", "ball", "window", "sign", "rope"),
    "notvisual": ("something", "a game", "the time", "their turn", "it"),
}
ADJECTIVES = ("red", "young", "small", "old", "black", "white", "busy", "wet", "man’s", "“big”")
DETERMINERS = ("a", "the", "two", "some", "his", "A")
FILLERS = ("in", "on", "with", "near", "while", "and", "is", "are", "holding", "looking at", "beside", ",")


@dataclass
class _Chain:
    id: str
    types: tuple[str, ...]
    kind: str  # box | nobox | scene | both
    boxes: list[list[int]] = field(default_factory=list)  # 1-based inclusive, one per box object


def generate(output: Path, images: int, seed: int, *, write_images: bool = True, **unknown: object) -> dict[str, int]:
    """Write ``images`` annotated images under ``output``; deterministic in ``seed``.

    Returns flat counts: images, samples, regions (phrase mentions), boxes (region→box links), objects,
    plus ``images_<split>`` / ``samples_<split>`` / ``regions_<split>`` / ``boxes_<split>``.
    """
    if unknown:
        raise UsageError(f"flickr30k-entities synth has no option(s) {', '.join(sorted(unknown))}")
    if images < 0:
        raise UsageError(f"images must be >= 0, not {images}")
    output = Path(output)
    for sub in ("Sentences", "Annotations"):
        (output / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ids = [str(v) for v in rng.sample(range(10**6, 10**10), images)]
    counts: dict[str, int] = {
        k: 0
        for k in (
            "images",
            "samples",
            "regions",
            "boxes",
            "regions_without_boxes",
            "notvisual_regions",
            "box_objects",
            "flag_objects",
            "multi_name_objects",
        )
    }
    for split in SPLITS:
        for what in ("images", "samples", "regions", "boxes"):
            counts[f"{what}_{split}"] = 0
    split_ids: dict[str, list[str]] = {s: [] for s in SPLITS}
    for image_id in ids:
        split = rng.choices(SPLITS, weights=(8, 1, 1))[0]
        split_ids[split].append(image_id)
        stats = _write_image(output, image_id, rng, write_images)
        stats["images"] = 1
        for key, value in stats.items():
            counts[key] = counts.get(key, 0) + value
            if key in ("images", "samples", "regions", "boxes"):
                counts[f"{key}_{split}"] += value
    for split, listed in split_ids.items():
        (output / f"{split}.txt").write_text("".join(f"{i}\n" for i in listed), encoding="utf-8")
    return counts


def _write_image(output: Path, image_id: str, rng: random.Random, write_images: bool) -> dict[str, int]:
    width, height = rng.randint(48, 160), rng.randint(48, 160)
    chains = _chains(rng, width, height)
    objects, stats = _objects(rng, chains)
    (output / "Annotations" / f"{image_id}.xml").write_text(
        _xml(image_id, width, height, objects), encoding="utf-8", newline="\n"
    )
    boxes_of = {c.id: sum(1 for names, box, _ in objects if box is not None and c.id in names) for c in chains}
    mentionable = [c for c in chains if not c.id.startswith("x")]
    lines = []
    for _ in range(5):
        line, mentions = _caption(rng, mentionable)
        lines.append(line + "\n")
        stats["samples"] += 1
        for chain in mentions:
            stats["regions"] += 1
            links = boxes_of.get(chain.id, 0) if chain.id != "0" else 0
            stats["boxes"] += links
            stats["regions_without_boxes"] += links == 0
            stats["notvisual_regions"] += chain.id == "0"
    (output / "Sentences" / f"{image_id}.txt").write_text("".join(lines), encoding="utf-8", newline="\n")
    image_seed = rng.randrange(2**31)
    if write_images:
        canonical = [B.one_based_inclusive_to_xyxy(*box) for _, box, _ in objects if box is not None]
        write_jpeg(output / "flickr30k-images" / f"{image_id}.jpg", width, height, canonical, seed=image_seed)
    return stats


def _chains(rng: random.Random, width: int, height: int) -> list[_Chain]:
    """Chains with consecutive ids (as in the release); an ``x``-prefixed id marks an XML-only chain."""
    base = rng.randint(1, 400)
    count = rng.randint(2, 6)
    chains = []
    for n in range(count):
        types = rng.choice(COMBOS) if rng.random() < 0.1 else (rng.choice(TYPES),)
        kind = rng.choices(("box", "nobox", "scene", "both"), weights=(75, 14, 7, 4))[0]
        chain = _Chain(str(base + n), types, kind)
        if kind == "box":
            chain.boxes = [_box(rng, width, height) for _ in range(rng.choices((1, 2, 3), weights=(6, 3, 1))[0])]
        chains.append(chain)
    if rng.random() < 0.1:  # a chain the XML names but no caption mentions (144 in the release)
        chains.append(_Chain(f"x{base + count}", ("other",), "box", [_box(rng, width, height)]))
    return chains


def _box(rng: random.Random, width: int, height: int) -> list[int]:
    """1-based inclusive pixel indices inside the image; some reach the right/bottom border."""
    xmin, ymin = rng.randint(1, width - 1), rng.randint(1, height - 1)
    xmax = width if rng.random() < 0.15 else rng.randint(xmin + 1, width)
    ymax = height if rng.random() < 0.15 else rng.randint(ymin + 1, height)
    return [xmin, ymin, xmax, ymax]


Obj = tuple[list[str], list[int] | None, tuple[int, int] | None]  # names, bndbox, (scene, nobndbox)


def _objects(rng: random.Random, chains: list[_Chain]) -> tuple[list[Obj], dict[str, int]]:
    """Box objects (some shared by two chains) in shuffled order, then flag objects (some multi-name)."""
    box_chains = [c for c in chains if c.kind == "box"]
    objects: list[Obj] = []
    for chain in box_chains:
        for box in chain.boxes:
            names = [chain.id]
            others = [c for c in box_chains if c is not chain and not c.id.startswith("x")]
            if others and not chain.id.startswith("x") and rng.random() < 0.2:
                names.append(rng.choice(others).id)
                rng.shuffle(names)
            objects.append((names, box, None))
    rng.shuffle(objects)
    flags = {"nobox": (0, 1), "scene": (1, 0), "both": (1, 1)}
    pending: list[Obj] = []
    for chain in chains:
        if chain.kind in flags:
            same = [o for o in pending if o[2] == flags[chain.kind]]
            if same and rng.random() < 0.3:
                same[0][0].append(chain.id)
            else:
                pending.append(([chain.id], None, flags[chain.kind]))
    objects += pending
    stats = {
        "samples": 0,
        "regions": 0,
        "boxes": 0,
        "regions_without_boxes": 0,
        "notvisual_regions": 0,
        "box_objects": sum(1 for o in objects if o[1] is not None),
        "flag_objects": sum(1 for o in objects if o[1] is None),
        "multi_name_objects": sum(1 for o in objects if len(o[0]) > 1),
    }
    return objects, stats


def _xml(image_id: str, width: int, height: int, objects: list[Obj]) -> str:
    """The release's exact spelling: tab indentation, no declaration, no trailing newline."""
    out = [
        "<annotation>",
        f"\t<filename>{image_id}.jpg</filename>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
    ]
    for names, box, flags in objects:
        out.append("\t<object>")
        out += [f"\t\t<name>{name.lstrip('x')}</name>" for name in names]
        if box is not None:
            out.append("\t\t<bndbox>")
            out += [f"\t\t\t<{tag}>{v}</{tag}>" for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)]
            out.append("\t\t</bndbox>")
        if flags is not None:
            out += [f"\t\t<scene>{flags[0]}</scene>", f"\t\t<nobndbox>{flags[1]}</nobndbox>"]
        out.append("\t</object>")
    out.append("</annotation>")
    return "\n".join(out)


def _caption(rng: random.Random, chains: list[_Chain]) -> tuple[str, list[_Chain]]:
    """One caption line (no newline) and the chains it mentions, in text order (chain 0 included)."""
    mentions: list[_Chain] = rng.sample(chains, rng.randint(1, min(4, len(chains))))
    if rng.random() < 0.25:
        mentions.insert(rng.randint(0, len(mentions)), _Chain("0", ("notvisual",), "none"))
    tokens: list[str] = []
    for i, chain in enumerate(mentions):
        if i or rng.random() < 0.2:
            tokens.append(rng.choice(FILLERS))
        words = _phrase_words(rng, chain.types)
        tokens.append(f"[/EN#{chain.id}/{'/'.join(chain.types)} {' '.join(words)}]")
    if rng.random() < 0.9:
        tokens.append(".")
    return " ".join(tokens), mentions


def _phrase_words(rng: random.Random, types: tuple[str, ...]) -> list[str]:
    noun = rng.choice(NOUNS[types[0]])
    if types[0] == "notvisual":
        return noun.split()
    words = [rng.choice(DETERMINERS)] if rng.random() < 0.8 else []
    if rng.random() < 0.3:
        words.append(rng.choice(ADJECTIVES))
    return [*words, noun]
