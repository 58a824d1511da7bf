"""RefCOCO, RefCOCO+ and RefCOCOg in the refer toolkit layout (SOURCES.md §2).

Input is the toolkit's ``data/<dataset>/`` folder: ``refs(<split_by>).p`` (a Python-2 pickle of refs,
loaded with :mod:`grounding_convert.safe_pickle`) and ``instances.json`` (COCO).  A ref has no box: its
``ann_id`` points at an instances annotation whose ``bbox`` is COCO ``[x, y, w, h]``, and the image file is
``instances.json`` ``images[].file_name`` (the ref's own ``file_name`` carries a ``_<n>`` suffix and names
no file).  One sample per sentence; its single region is the whole sentence grounded to the ref's box.

Both files are loaded whole (tens of MB) and cached per process, keyed on path, mtime and size, so the
several partitions a worker runs share one load.  Partitions are ranges of ``refs_per_partition`` refs.
``--split`` is applied at read time: sentences of other splits are yielded as ``Filtered("split")``,
because the split is a field of each ref, not a file of its own.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson

from ..boxes import clip, is_empty, is_inside, xywh_to_xyxy
from ..errors import Filtered, InputFileError, Note, Reject, UsageError
from ..option_types import PER_PARTITION, bounded
from ..safe_pickle import EXPECTED as PICKLE_EXPECTED
from ..safe_pickle import load_plain_pickle
from ..schema import ImageRef, Region, Sample, image_keys, refcoco_id
from .base import Partition, Reader, ReaderOptions, ReadItem

REFS_FILE = re.compile(r"refs\((?P<split_by>[A-Za-z0-9_-]+)\)\.p")
INSTANCES_EXPECTED = "a COCO instances.json object with images, annotations and categories lists"
DATASET_FOLDERS = ("refcoco", "refcoco+", "refcocog")


@dataclass
class RefCocoOptions(ReaderOptions):
    split_by: str | None = None  # unc | google | umd | berkeley ...; default per dataset
    text: Literal["sent", "raw"] = "sent"  # cleaned lower-case sentence, or the string as typed
    refs_per_partition: int = bounded(5000, PER_PARTITION)


# --- whole-file loading, cached per process ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instances:
    """The parts of instances.json a ref needs (segmentations dropped): id → raw entry fields."""

    images: dict[int, tuple[Any, Any, Any]]  # image id → (file_name, width, height)
    annotations: dict[int, tuple[Any, Any, Any]]  # ann id → (bbox, image_id, category_id)
    categories: dict[int, str]


def _stat_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError:
        raise InputFileError(str(path), "file not found") from None
    return str(path), st.st_mtime_ns, st.st_size


def load_refs(path: Path) -> list[Any]:
    """The refs list of a ``refs(*).p`` file (cached while the file is unchanged)."""
    return _load_refs(*_stat_key(path))


def load_instances(path: Path) -> Instances:
    """The image/annotation/category index of an instances.json (cached while the file is unchanged)."""
    return _load_instances(*_stat_key(path))


@functools.lru_cache(maxsize=2)
def _load_refs(path: str, mtime_ns: int, size: int) -> list[Any]:
    refs = load_plain_pickle(path)
    if not isinstance(refs, list):
        raise InputFileError(path, f"holds a {type(refs).__name__}, not a list of refs", expected=PICKLE_EXPECTED)
    return refs


@functools.lru_cache(maxsize=2)
def _load_instances(path: str, mtime_ns: int, size: int) -> Instances:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc})", expected=INSTANCES_EXPECTED) from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:  # the toolkit's json.load also takes NaN/Infinity; such boxes are rejected per record later
            data = json.loads(raw.decode("utf-8"))  # strict: json.loads(bytes) lets surrogates through
        except ValueError as exc:
            raise InputFileError(path, f"is not valid JSON ({exc})", expected=INSTANCES_EXPECTED) from None
    if not isinstance(data, dict):
        raise InputFileError(path, f"holds a JSON {type(data).__name__}", expected=INSTANCES_EXPECTED)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputFileError(path, f"has no {key!r} list", expected=INSTANCES_EXPECTED)

    def with_id(entries: list[Any]) -> Iterator[dict[str, Any]]:
        # entries without a usable id cannot be referred to; refs pointing at them are rejected later
        return (e for e in entries if isinstance(e, dict) and _is_int(e.get("id")))

    return Instances(
        images={e["id"]: (e.get("file_name"), e.get("width"), e.get("height")) for e in with_id(data["images"])},
        annotations={
            e["id"]: (e.get("bbox"), e.get("image_id"), e.get("category_id")) for e in with_id(data["annotations"])
        },
        categories={e["id"]: e["name"] for e in with_id(data["categories"]) if isinstance(e.get("name"), str)},
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _RecordProblem(Exception):
    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message


# --- the readers -------------------------------------------------------------------------------------


class _RefReader(Reader):
    """Shared by RefCOCO, RefCOCO+ and RefCOCOg: only the dataset name and default split_by differ."""

    default_split_by: ClassVar[str]
    Options = RefCocoOptions
    options: RefCocoOptions

    # --- locating the files ---

    def _locate(self, input_path: str) -> tuple[Path, Path, str]:
        """(refs file, instances.json, split_by) for a dataset folder, the refer data root or a refs file."""
        path = Path(input_path)
        split_by = self.options.split_by
        if split_by is not None and not REFS_FILE.fullmatch(f"refs({split_by}).p"):
            raise UsageError(f"split_by {split_by!r} is not a refs file name part (e.g. unc, google, umd)")
        if path.is_file() and REFS_FILE.fullmatch(path.name):
            named = REFS_FILE.fullmatch(path.name)["split_by"]  # type: ignore[index]
            if split_by is not None and split_by != named:
                raise UsageError(f"{path} is split_by {named!r} but --split-by {split_by} was given")
            split_by, folder = named, path.parent
        elif path.is_dir():
            folder = path
            nested = path / self.dataset
            if not (path / "instances.json").exists() and (nested / "instances.json").exists():
                folder = nested  # the refer toolkit's data/ root
        else:
            raise InputFileError(
                str(path), "does not exist" if not path.exists() else "is not a refs(<split_by>).p file",
                expected=f"the refer {self.dataset} folder holding refs(<split_by>).p and instances.json",
            )  # fmt: skip
        split_by = split_by or self.default_split_by
        refs = folder / f"refs({split_by}).p"
        if not refs.is_file():
            present = sorted(p.name for p in folder.glob("refs(*).p"))
            has = f"this folder has {', '.join(present)}" if present else "this folder has no refs(*).p file"
            raise InputFileError(
                str(refs), f"not found; {has}", expected=f"refs({split_by}).p (choose with --split-by)"
            )
        instances = folder / "instances.json"
        if not instances.is_file():
            raise InputFileError(str(instances), "not found", expected=INSTANCES_EXPECTED)
        return refs, instances, split_by

    def input_files(self, input_path: str) -> list[Path]:
        try:
            refs, instances, _ = self._locate(input_path)
        except (InputFileError, UsageError):
            return []
        return [refs, instances]

    @classmethod
    def detect(cls, path: str) -> bool:
        """A folder with instances.json and a refs(*).p; its name picks the dataset (refcoco otherwise)."""
        folder = Path(path)
        if not folder.is_dir() or not (folder / "instances.json").is_file():
            return False
        if not any(REFS_FILE.fullmatch(p.name) for p in folder.glob("refs(*).p")):
            return False
        if folder.name in DATASET_FOLDERS:
            return folder.name == cls.dataset
        return cls.dataset == "refcoco"

    # --- plan / read ---

    def plan(self, input_path: str) -> list[Partition]:
        refs_path, instances_path, split_by = self._locate(input_path)
        size = self.options.refs_per_partition
        if not _is_int(size) or size < 1:
            raise UsageError(f"refs_per_partition must be a positive integer, not {size!r}")
        refs = load_refs(refs_path)
        load_instances(instances_path)  # whole-file problems surface here, not in a worker
        wanted = self.options.split
        if wanted is not None:
            found = sorted({r["split"] for r in refs if isinstance(r, dict) and isinstance(r.get("split"), str)})
            if wanted not in found:
                raise UsageError(f"{refs_path} has no split {wanted!r} (its splits: {', '.join(found) or 'none'})")
        params = {"refs": str(refs_path), "instances": str(instances_path), "split_by": split_by}
        return [
            Partition(
                index=i,
                key=f"refs-{split_by}-{i:05d}",
                source=str(refs_path),
                params={**params, "start": start, "stop": min(start + size, len(refs))},
            )
            for i, start in enumerate(range(0, len(refs), size))
        ]

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        params = partition.params
        refs_path = Path(params["refs"])
        refs = load_refs(refs_path)
        instances = load_instances(Path(params["instances"]))
        for index in range(params["start"], min(params["stop"], len(refs))):
            yield from self._ref_items(refs[index], index, str(refs_path), instances, params["split_by"])

    def _ref_items(self, ref: Any, index: int, source: str, instances: Instances, split_by: str) -> Iterator[ReadItem]:
        where = f"refs[{index}]"
        if not isinstance(ref, dict):
            yield Reject("wrong-type", f"{source}: {where} is a {type(ref).__name__}, not a dict", source, where)
            return
        ref_id = ref.get("ref_id")
        sentences = ref.get("sentences")
        problem = None
        if not _is_int(ref_id):
            problem = _key_problem(ref, "ref_id", "an integer")
        elif not isinstance(sentences, list):
            problem = _key_problem(ref, "sentences", "a list")
        elif not sentences:
            problem = ("bad-record", "has no sentences")
        if problem is not None:
            label = f"{where} ref_id={ref_id}" if _is_int(ref_id) else where
            yield Reject(problem[0], f"{source}: {label} {problem[1]}", source, label, raw=ref)
            return

        positions = [f"ref_id={ref_id} sent_id={_sent_id(s, j)}" for j, s in enumerate(sentences)]
        split = ref.get("split")
        try:
            if not isinstance(split, str):
                raise _RecordProblem(*_key_problem(ref, "split", "a string"))
            if self.options.split is not None and split != self.options.split:
                for pos in positions:
                    yield Filtered("split", source, pos)
                return
            image, box, clipped, category_id = self._resolve(ref, instances)
        except _RecordProblem as exc:
            for pos in positions:
                yield Reject(exc.reason, f"{source}: {pos}: {exc.message}", source, pos, raw=ref)
            return

        text_key = self.options.text
        for j, sentence in enumerate(sentences):
            pos = positions[j]
            sent_id = sentence.get("sent_id") if isinstance(sentence, dict) else None
            if not isinstance(sentence, dict):
                problem = ("wrong-type", f"sentence {j} is a {type(sentence).__name__}, not a dict")
            elif not _is_int(sent_id):
                problem = _key_problem(sentence, "sent_id", "an integer", f"sentence {j}")
            elif not isinstance(sentence.get(text_key), str):
                problem = _key_problem(sentence, text_key, "a string", f"sentence {j}")
            elif not sentence[text_key].strip():
                problem = ("bad-text", f"sentence {j} has an empty {text_key!r}")
            else:
                problem = None
            if problem is not None:
                yield Reject(problem[0], f"{source}: {pos}: {problem[1]}", source, pos, raw=sentence)
                continue
            text = sentence[text_key].strip()
            if clipped:
                yield Note("clipped-box")
            yield Sample(
                id=refcoco_id(self.dataset, split_by, ref_id, sent_id),
                dataset=self.dataset,
                split=split,
                image=ImageRef(image[0], str(image[3]), image[1], image[2], keys=image_keys(coco=image[3])),
                text=text,
                regions=[
                    Region(
                        phrase=text,
                        span=(0, len(text)),
                        boxes=[list(box)],
                        category=instances.categories.get(category_id),
                    )
                ],
                meta={
                    "ref_id": ref_id,
                    "ann_id": ref["ann_id"],
                    "sent_id": sent_id,
                    "category_id": category_id,
                },
            )

    def _resolve(self, ref: dict[str, Any], instances: Instances) -> tuple[tuple, list[float], bool, Any]:
        """The ref's image (file, width, height, id), canonical box, whether it was clipped, category id."""
        ann_id = ref.get("ann_id")
        if not _is_int(ann_id):
            raise _RecordProblem(*_key_problem(ref, "ann_id", "an integer"))
        if ann_id not in instances.annotations:
            raise _RecordProblem("unknown-reference", f"ann_id {ann_id} is not in instances.json annotations")
        bbox, image_id, category_id = instances.annotations[ann_id]
        if not _is_int(image_id):
            image_id = ref.get("image_id")
        elif _is_int(ref.get("image_id")) and ref["image_id"] != image_id:
            raise _RecordProblem(
                "unknown-reference",
                f"ref image_id {ref['image_id']} but annotation {ann_id} is on image {image_id}",
            )
        if not _is_int(category_id):
            category_id = ref.get("category_id") if _is_int(ref.get("category_id")) else None
        if image_id not in instances.images:
            raise _RecordProblem("unknown-reference", f"image {image_id} is not in instances.json images")
        file_name, width, height = instances.images[image_id]
        if not isinstance(file_name, str) or not file_name:
            raise _RecordProblem("bad-record", f"image {image_id} has no file_name in instances.json")
        size = [width, height]
        if not all(_is_number(v) and v > 0 and float(v).is_integer() for v in size):
            raise _RecordProblem("bad-size", f"image {image_id} has width/height {width!r}/{height!r}")
        width, height = int(width), int(height)
        if not (isinstance(bbox, list | tuple) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise _RecordProblem("bad-box", f"annotation {ann_id} bbox {bbox!r} is not four finite numbers")
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise _RecordProblem("empty-box", f"annotation {ann_id} bbox {list(bbox)} has no area")
        box = xywh_to_xyxy(*bbox)
        clipped = not is_inside(box, width, height)
        if clipped:
            box = clip(box, width, height)
            if is_empty(box):
                raise _RecordProblem(
                    "empty-box",
                    f"annotation {ann_id} bbox {list(bbox)} lies outside the {width}x{height} image",
                )
        return (file_name, width, height, image_id), box, clipped, category_id


def _sent_id(sentence: Any, j: int) -> Any:
    if isinstance(sentence, dict) and _is_int(sentence.get("sent_id")):
        return sentence["sent_id"]
    return f"?{j}"


def _key_problem(record: dict[str, Any], key: str, kind: str, what: str = "") -> tuple[str, str]:
    prefix = f"{what} " if what else ""
    if key not in record:
        return "missing-key", f"{prefix}has no {key!r}"
    return "wrong-type", f"{prefix}{key!r} is {record[key]!r}, not {kind}"


class RefCocoReader(_RefReader):
    name = "refcoco"
    dataset = "refcoco"
    default_split_by = "unc"
    description = "RefCOCO (refer toolkit: refs(<split_by>).p + instances.json); one sample per sentence"


class RefCocoPlusReader(_RefReader):
    name = "refcoco+"
    dataset = "refcoco+"
    default_split_by = "unc"
    description = "RefCOCO+ (refer toolkit: refs(unc).p + instances.json); one sample per sentence"


class RefCocogReader(_RefReader):
    name = "refcocog"
    dataset = "refcocog"
    default_split_by = "umd"
    description = "RefCOCOg (refer toolkit: refs(umd|google).p + instances.json); one sample per sentence"
