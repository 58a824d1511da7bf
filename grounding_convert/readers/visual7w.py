"""Visual7W reader (SOURCES §3): telling QAs with their grounded objects, pointing QAs with 4 candidate boxes.

The dataset JSONs are single objects (``{"images": [...], "boxes": [...]}``) that can be hundreds of MB, so
they are streamed with ijson: ``plan`` counts QA pairs per image once and cuts contiguous image ranges;
``read`` loads only its image range, then streams the grounding/box lists keeping just the ids it needs.
Memory therefore grows with ``qa_per_partition``, never with the dataset.

The JSONs carry no image size, so one of two size sources is required: the JPEG headers under
``image_root`` (``v7w_<image_id>.jpg``) or Visual Genome's ``image_data.json`` (``vg_image_data``).

Pointing candidates are ordered by a shuffle seeded with the ``qa_id`` so that the answer is not always
first (a model must not learn "the first box is right") while staying identical across runs and workers.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import ijson
import orjson

from .. import boxes
from ..errors import Filtered, InputFileError, Note, RecordError, Reject, UsageError
from ..images import header_size, open_image
from ..option_types import PER_PARTITION, bounded
from ..safe_paths import UnsafePath
from ..schema import ImageRef, Region, Sample, image_keys, visual7w_id
from .base import Partition, Reader, ReaderOptions, ReadItem
from .visual_genome import load_image_data

KINDS = ("telling", "pointing")
DATASET_FILES = {"telling": "dataset_v7w_telling.json", "pointing": "dataset_v7w_pointing.json"}
ANSWER_FILES = {"telling": "v7w_telling_answers.json", "pointing": "v7w_pointing_answers.json"}
GROUNDING_DIR = "dataset_v7w_grounding_annotations"
JSON_ERRORS = (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError)


@dataclass
class Visual7wOptions(ReaderOptions):
    """``mode`` picks telling/pointing (not ``task``, which would be confused with the output tasks)."""

    image_root: str | None = None
    vg_image_data: str | None = None
    mode: Literal["telling", "pointing", "both"] = "both"
    qa_per_partition: int = bounded(20000, PER_PARTITION)


class Visual7wReader(Reader):
    name = "visual7w"
    dataset = "visual7w"
    description = "Visual7W telling (grounded QA) and pointing (choose the box) QA pairs"
    Options = Visual7wOptions
    options: Visual7wOptions

    @classmethod
    def detect(cls, path: str) -> bool:
        p = Path(path)
        if p.is_file():
            return p.name in DATASET_FILES.values()
        return p.is_dir() and any((p / name).is_file() for name in DATASET_FILES.values())

    def input_files(self, input_path: str) -> list[Path]:
        folder = _folder(Path(input_path))
        found = []
        for kind in self._kinds():
            for path in (folder / DATASET_FILES[kind], _answers_file(folder, kind)):
                if path is not None and path.is_file():
                    found.append(path)
        if self.options.vg_image_data:
            found.append(Path(self.options.vg_image_data))
        return found

    def _kinds(self) -> tuple[str, ...]:
        return KINDS if self.options.mode == "both" else (self.options.mode,)

    def _check_size_source(self) -> None:
        if not self.options.image_root and not self.options.vg_image_data:
            raise UsageError(
                "Visual7W JSONs carry no image width/height: give --image-root (folder of "
                "v7w_<image_id>.jpg, only the JPEG headers are read) or --vg-image-data "
                "(Visual Genome image_data.json)"
            )
        vg, root = self.options.vg_image_data, self.options.image_root
        if vg and not Path(vg).is_file():
            raise InputFileError(vg, "file not found", "Visual Genome image_data.json")
        if root and not Path(root).is_dir():
            raise InputFileError(root, "folder not found", "a folder of v7w_<image_id>.jpg")

    def plan(self, input_path: str) -> list[Partition]:
        self._check_size_source()
        p = Path(input_path)
        if not p.exists():
            raise InputFileError(input_path, "not found", "a Visual7W folder with dataset_v7w_*.json")
        folder = _folder(p)
        kinds = [k for k in self._kinds() if (folder / DATASET_FILES[k]).is_file()]
        if p.is_file():
            kinds = [k for k in kinds if DATASET_FILES[k] == p.name]
        if not kinds:
            wanted = " or ".join(DATASET_FILES[k] for k in self._kinds())
            raise InputFileError(input_path, "no Visual7W dataset file", wanted)
        partitions: list[Partition] = []
        size = max(1, int(self.options.qa_per_partition))
        for kind in kinds:
            path = folder / DATASET_FILES[kind]
            answers = _answers_file(folder, kind)
            for number, (start, stop, qas) in enumerate(_image_ranges(path, size)):
                params = {"kind": kind, "start": start, "stop": stop, "qas": qas}
                params["answers"] = str(answers) if answers is not None else None
                partitions.append(Partition(len(partitions), f"{kind}-{number:05d}", str(path), params))
        return partitions

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        self._check_size_source()
        kind, source = partition.params["kind"], partition.source
        start, stop = partition.params["start"], partition.params["stop"]
        images = _load_images(source, start, stop)
        answers = partition.params.get("answers")
        qa_ids = {qa.get("qa_id") for img in images for qa in _qa_pairs(img)}
        sizes = self._sizes(images)
        if kind == "telling":
            groundings = _groundings(answers, qa_ids) if answers else {}
            if not answers:
                yield Note("telling-without-groundings", sum(len(_qa_pairs(i)) for i in images))
            lookup: dict[int, dict[str, Any]] = {}
        else:
            groundings = {}
            lookup = _pointing_boxes(source, answers, _needed_box_ids(images))
        for offset, image in enumerate(images):
            index = start + offset
            yield from self._image(kind, source, index, image, sizes, groundings, lookup)

    # --- per image / per QA --------------------------------------------------------------------------

    def _image(self, kind, source, index, image, sizes, groundings, lookup) -> Iterator[ReadItem]:
        image_id = image.get("image_id")
        split = image.get("split")
        for j, qa in enumerate(_qa_pairs(image)):
            position = f"images[{index}].qa_pairs[{j}]" + (f" (qa_id {qa['qa_id']})" if "qa_id" in qa else "")
            if self.options.split and split != self.options.split:
                yield Filtered("split", source, position)
                continue
            size = sizes.get(image_id)
            if isinstance(size, RecordError):
                yield Reject(size.reason, f"{source}: {position}: {size}", source, position, _raw(qa))
                continue
            try:
                if kind == "telling":
                    sample, clipped = _telling(qa, image, size, groundings)
                else:
                    sample, clipped = _pointing(qa, image, size, lookup)
            except RecordError as exc:
                yield Reject(exc.reason, f"{source}: {position}: {exc.message}", source, position, _raw(qa))
                continue
            sample.image.keys = self._image_keys(image_id)
            yield sample
            if clipped:
                yield Note("clipped-box", clipped, {"sample_id": sample.id, "source": source})

    def _image_keys(self, image_id: Any) -> dict[str, int]:
        """image.keys: Visual7W images are Visual Genome images; coco/flickr ids from image_data.json if given."""
        if self.options.vg_image_data:
            info = load_image_data(self.options.vg_image_data).get(image_id)
            if info is not None:
                return info.keys
        return image_keys(vg=image_id)

    def _sizes(self, images: list[dict[str, Any]]) -> dict[Any, tuple[int, int] | RecordError]:
        """Width/height per image id: JPEG header first, VG image_data as the fallback."""
        sizes: dict[Any, tuple[int, int] | RecordError] = {}
        missing: dict[Any, str] = {}
        for image in images:
            image_id = image.get("image_id")
            name = image.get("filename") or f"v7w_{image_id}.jpg"
            if image_id is None:
                sizes[image_id] = RecordError("missing-key", "image record has no image_id")
                continue
            if self.options.image_root:  # the name comes from the data: opened only under the root
                try:
                    with open_image(self.options.image_root, str(name)) as fh:
                        sizes[image_id] = _header_size(fh, name)
                    continue
                except UnsafePath as exc:
                    sizes[image_id] = exc
                    continue
                except RecordError:  # missing: VG's image_data.json may still know the size
                    pass
            missing[image_id] = str(name)
        vg = _vg_sizes(self.options.vg_image_data, set(missing)) if self.options.vg_image_data else {}
        for image_id, name in missing.items():
            if image_id in vg:
                sizes[image_id] = vg[image_id]
            else:
                where = [f"{self.options.image_root}/{name}"] if self.options.image_root else []
                where += [f"{self.options.vg_image_data}"] if self.options.vg_image_data else []
                message = f"no size for image {image_id} in {' or '.join(where)}"
                sizes[image_id] = RecordError("missing-image", message)
        return sizes


# --- sample building ---------------------------------------------------------------------------------


def _telling(qa, image, size, groundings) -> tuple[Sample, int]:
    qa_id, question = _require(qa, "qa_id"), _text(qa, "question")
    answer = _require(qa, "answer")
    width, height = size
    regions: dict[str, Region] = {}
    clipped = 0
    for g in groundings.get(qa_id, []):
        name = str(g.get("name") or "").strip()
        if not name:
            raise RecordError("missing-key", f"grounding box of qa_id {qa_id} has no name")
        box, was_clipped = _pixel_box(g, width, height, f"grounding box {name!r}")
        clipped += was_clipped
        region = regions.get(name)
        if region is None:
            region = regions[name] = Region(phrase=name, span=_find_span(question, name))
        region.boxes.append(box)
    meta = _meta(qa, "telling")
    meta["multiple_choices"] = _choices_json(qa.get("multiple_choices"))
    # text order first (DESIGN §1), then the unplaced names in file order (sorted() is stable)
    ordered = sorted(regions.values(), key=lambda r: (r.span is None, r.span[0] if r.span else 0))
    return _sample(qa, image, size, question, str(answer), ordered, meta), clipped


def _pointing(qa, image, size, lookup) -> tuple[Sample, int]:
    qa_id, question = _require(qa, "qa_id"), _text(qa, "question")
    answer_id = _require(qa, "answer")
    choices = _require(qa, "multiple_choices")
    if not isinstance(choices, list):
        raise RecordError("wrong-type", "multiple_choices is not a list of box ids")
    candidates = [answer_id, *choices]
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in candidates):
        raise RecordError("wrong-type", f"pointing answer/multiple_choices must be box ids, got {candidates!r}")
    width, height = size
    clipped = 0
    order = list(candidates)
    random.Random(int(qa_id)).shuffle(order)
    regions = []
    for box_id in order:
        record = lookup.get(box_id)
        if record is None:
            raise RecordError("unknown-reference", f"box_id {box_id} is not in the top-level boxes list")
        name = str(record.get("name") or "").strip()
        box, was_clipped = _pixel_box(record, width, height, f"box_id {box_id}")
        clipped += was_clipped
        role = "answer" if box_id == answer_id else "choice"
        regions.append(Region(phrase=name, span=_find_span(question, name), boxes=[box], role=role))
    meta = _meta(qa, "pointing")
    meta["answer_box_id"] = answer_id
    meta["multiple_choices"] = orjson.dumps(choices).decode()
    meta["candidate_box_ids"] = orjson.dumps(order).decode()
    answer_name = str(lookup[answer_id].get("name") or "")
    return _sample(qa, image, size, question, answer_name, regions, meta), clipped


def _sample(qa, image, size, question, answer, regions, meta) -> Sample:
    image_id = qa.get("image_id", image.get("image_id"))  # pointing QAs carry no image_id
    width, height = size
    return Sample(
        id=visual7w_id(qa["qa_id"]),
        dataset="visual7w",
        split=image.get("split"),
        image=ImageRef(
            file=str(image.get("filename") or f"v7w_{image_id}.jpg"),
            id=str(image_id),
            width=width,
            height=height,
        ),
        text=question,
        answer=answer,
        regions=regions,
        meta=meta,
    )


def _meta(qa: dict[str, Any], subset: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"subset": subset, "qa_id": qa["qa_id"]}
    if qa.get("type") is not None:
        meta["type"] = str(qa["type"])
    return meta


def _pixel_box(record: dict[str, Any], width: int, height: int, what: str) -> tuple[list[float], int]:
    """Native x/y/width/height → clipped canonical box, and 1 when clipping changed it."""
    try:
        values = [record["x"], record["y"], record["width"], record["height"]]
    except KeyError as exc:
        raise RecordError("missing-key", f"{what} has no {exc.args[0]!r}") from None
    if not boxes.is_finite(values):
        raise RecordError("bad-box", f"{what} is not four finite numbers: {values!r}")
    box = boxes.xywh_to_xyxy(*values)
    fixed = boxes.clip(box, width, height)
    if boxes.is_empty(fixed):
        raise RecordError("empty-box", f"{what} {values!r} has no area inside the {width}x{height} image")
    return fixed, int(fixed != box)


def _find_span(text: str, phrase: str) -> tuple[int, int] | None:
    """First whole-word, same-case occurrence, so that ``text[span] == phrase`` always holds."""
    if not phrase:
        return None
    match = re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text)
    return (match.start(), match.end()) if match else None


def _require(qa: dict[str, Any], key: str) -> Any:
    if key not in qa or qa[key] is None:
        raise RecordError("missing-key", f"QA pair has no {key!r}")
    return qa[key]


def _text(qa: dict[str, Any], key: str) -> str:
    value = _require(qa, key)
    if not isinstance(value, str):
        raise RecordError("wrong-type", f"{key} is not a string")
    if not value.strip():
        raise RecordError("bad-text", f"{key} is empty")
    return value


def _choices_json(choices: Any) -> Any:
    if isinstance(choices, list | dict):
        return orjson.dumps(choices).decode()
    return choices


def _raw(qa: Any) -> Any:
    return orjson.loads(orjson.dumps(qa, default=str)) if isinstance(qa, dict) else qa


def _qa_pairs(image: dict[str, Any]) -> list[dict[str, Any]]:
    pairs = image.get("qa_pairs")
    return [qa for qa in pairs if isinstance(qa, dict)] if isinstance(pairs, list) else []


# --- files -------------------------------------------------------------------------------------------


def _folder(path: Path) -> Path:
    return path.parent if path.is_file() else path


def _answers_file(folder: Path, kind: str) -> Path | None:
    """Grounding annotations sit beside the dataset file or in the zip's folder (layout UNVERIFIED)."""
    for candidate in (folder / ANSWER_FILES[kind], folder / GROUNDING_DIR / ANSWER_FILES[kind]):
        if candidate.is_file():
            return candidate
    return None


def _image_ranges(path: Path, size: int) -> list[tuple[int, int, int]]:
    """Contiguous ``(start, stop, qa_count)`` image ranges of about ``size`` QAs, from one event scan."""
    ranges: list[tuple[int, int, int]] = []
    images = start = qas = 0
    seen_images_key = False
    try:
        with open(path, "rb") as f:
            for prefix, event, _ in ijson.parse(f):
                if prefix == "images" and event == "start_array":
                    seen_images_key = True
                elif prefix == "images.item" and event == "end_map":
                    images += 1
                    if qas >= size:
                        ranges.append((start, images, qas))
                        start, qas = images, 0
                elif prefix == "images.item.qa_pairs.item" and event == "start_map":
                    qas += 1
    except JSON_ERRORS as exc:
        problem = f"invalid or truncated JSON ({exc})"
        raise InputFileError(str(path), problem, "a Visual7W dataset JSON") from None
    except OSError as exc:
        raise InputFileError(str(path), f"cannot read ({exc})") from None
    if not seen_images_key:
        raise InputFileError(str(path), "no top-level 'images' list", '{"images": [...]} (SOURCES §3.2)')
    if images > start:
        ranges.append((start, images, qas))
    return ranges


def _stream(path: str, key: str) -> Iterator[Any]:
    """Items of the top-level ``key`` list (or of a bare top-level list), floats as Python floats."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
            f.seek(0)
            prefix = "item" if head.startswith(b"[") else f"{key}.item"
            yield from ijson.items(f, prefix, use_float=True)
    except JSON_ERRORS as exc:
        expected = f"a JSON with a {key!r} list"
        raise InputFileError(path, f"invalid or truncated JSON ({exc})", expected) from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc})") from None


def _load_images(path: str, start: int, stop: int) -> list[dict[str, Any]]:
    return [x if isinstance(x, dict) else {} for x in itertools.islice(_stream(path, "images"), start, stop)]


def _groundings(path: str, qa_ids: set[Any]) -> dict[Any, list[dict[str, Any]]]:
    found: dict[Any, list[dict[str, Any]]] = {}
    for box in _stream(path, "boxes"):
        if isinstance(box, dict) and box.get("qa_id") in qa_ids:
            found.setdefault(box["qa_id"], []).append(box)
    return found


def _needed_box_ids(images: list[dict[str, Any]]) -> set[int]:
    ids: set[int] = set()
    for image in images:
        for qa in _qa_pairs(image):
            for value in [qa.get("answer"), *(qa.get("multiple_choices") or [])]:
                if isinstance(value, int):
                    ids.add(value)
    return ids


def _pointing_boxes(source: str, answers: str | None, needed: set[int]) -> dict[int, dict[str, Any]]:
    """Candidate boxes by box_id from the dataset's own ``boxes`` list, then the answers file if any."""
    found: dict[int, dict[str, Any]] = {}
    for path in [source, answers] if answers else [source]:
        missing = needed - found.keys()
        if not missing:
            break
        for box in _stream(path, "boxes"):
            if isinstance(box, dict) and box.get("box_id") in missing and box["box_id"] not in found:
                found[box["box_id"]] = box
    return found


def _vg_sizes(path: str, image_ids: set[Any]) -> dict[Any, tuple[int, int] | RecordError]:
    """Sizes from VG image_data.json (v1.2 key ``image_id``, v1.0 ``id``) for the wanted ids only."""
    sizes: dict[Any, tuple[int, int] | RecordError] = {}
    if not image_ids:
        return sizes
    for record in _stream(path, "images"):
        if not isinstance(record, dict):
            continue
        image_id = record.get("image_id", record.get("id"))
        if image_id in image_ids:
            w, h = record.get("width"), record.get("height")
            ok = all(isinstance(v, int | float) and v > 0 for v in (w, h))
            sizes[image_id] = (int(w), int(h)) if ok else RecordError("bad-size", f"VG size {w}x{h} is not usable")
    return sizes


def _header_size(fh: BinaryIO, name: object) -> tuple[int, int] | RecordError:
    try:
        return header_size(fh)
    except Exception as exc:  # not an image, truncated, a size of zero
        return RecordError("bad-size", f"cannot read the image header of {name!r} ({exc})")
