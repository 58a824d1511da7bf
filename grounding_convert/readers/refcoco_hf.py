"""RefCOCO/+/g as mirrored on the Hugging Face Hub, as Parquet (FORMATS_NEXT §12); the variant from the columns.

* ``jxu124/refcoco{,plus,g}``: one row per ref (``ref_id``, ``ann_id``, ``sentences[{raw, sent, sent_id}]``,
  ``bbox`` = pixel **xyxy**, ``raw_anns`` and ``raw_image_info`` as JSON strings, ``image_path``, ``split``).
  One sample per sentence, the whole sentence grounded to the box, with the refer-toolkit reader's ids
  (``refcoco/unc/<ref_id>/<sent_id>``; ``umd`` for RefCOCOg), so both sources of the same ref dedupe.
  The split is the row's own ``split`` column (toolkit names); when absent, the file's Hub split is mapped
  (``validation`` → ``val``; ``test`` → ``testA`` for RefCOCO/RefCOCO+, inferred in FORMATS_NEXT from the row
  counts; ``testB`` → ``testB``) and the Hub name is kept in ``meta["hf_split"]``.  Each row's ``bbox`` is
  checked against ``raw_anns.bbox`` (xywh) and rejected (``bad-box``) when they disagree, since the card
  does not state the convention.  The image is ``image_path`` without its ``coco/`` prefix
  (``train2014/COCO_train2014_….jpg``, as ms-swift strips it), its size from ``raw_image_info``.
* ``lmms-lab/RefCOCO*``: evaluation rows (``question_id``, ``image`` bytes, ``answer`` = the expressions,
  ``bbox`` = COCO **xywh**, ``file_name``).  One sample per expression; the split is the file's (``val``,
  ``test``, ``testA``, ``testB``) kept as published, since FORMATS_NEXT could not match its row counts to
  the UNC splits; every sample has ``meta["evaluation_only"] = true``.  The image size comes from the
  embedded image's header; ``-O extract_images=DIR`` writes the embedded bytes to ``DIR/<file_name>``
  through :mod:`grounding_convert.safe_paths` (never overwriting a different file, never through a planted
  symlink; a hostile ``file_name`` is an ``unsafe-path`` reject).

Input: one ``.parquet`` file or a folder of them (Hub layout ``data/<split>-00000-of-0000N.parquet``); one
partition per row group.  ``-O dataset=refcoco|refcoco+|refcocog`` overrides the name guessed from the path.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from ..boxes import clip, is_empty, is_inside, xywh_to_xyxy
from ..errors import Filtered, InputFileError, Note, Reject, UsageError
from ..safe_paths import UnsafePath, create_under, open_new, resolve_under
from ..schema import Box, ImageRef, Region, Sample, refcoco_id
from .base import Partition, Reader, ReaderOptions, ReadItem

JXU_COLUMNS = ("ref_id", "sentences", "bbox", "raw_anns", "raw_image_info", "image_path")
LMMS_COLUMNS = ("question_id", "image", "answer", "bbox", "file_name")
EXPECTED = (
    "Parquet of jxu124/refcoco* (ref_id, sentences, bbox, …) or lmms-lab/RefCOCO* (question_id, image, answer, bbox)"
)
HUB_SPLIT = re.compile(r"^(?P<split>[A-Za-z]+)(?:-\d{5}-of-\d{5})?$")
SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
TOOLKIT_SPLITS = ("train", "val", "test", "testA", "testB")
BOX_AGREEMENT = 0.01  # pixels: bbox vs raw_anns.bbox


@dataclass
class RefCocoHfOptions(ReaderOptions):
    dataset: Literal["refcoco", "refcoco+", "refcocog"] | None = None
    text: Literal["sent", "raw"] = "sent"  # jxu124: the cleaned sentence or the one typed
    extract_images: str | None = None  # lmms-lab: write embedded images under this folder


class _Problem(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def variant_of(names: list[str]) -> str | None:
    if all(c in names for c in JXU_COLUMNS):
        return "jxu124"
    if all(c in names for c in LMMS_COLUMNS):
        return "lmms-lab"
    return None


def hub_split(path: Path) -> str:
    match = HUB_SPLIT.match(path.stem)
    return match.group("split") if match else path.stem


def toolkit_split(hub: str, dataset: str) -> str:
    if hub == "validation":
        return "val"
    if hub == "test" and dataset in ("refcoco", "refcoco+"):
        return "testA"
    return hub


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _checked(box: Box, width: int, height: int) -> tuple[Box, bool]:
    if is_empty(box):
        raise _Problem("empty-box", f"bbox {box} has no area")
    if is_inside(box, width, height):
        return box, False
    fixed = clip(box, width, height)
    if is_empty(fixed):
        raise _Problem("empty-box", f"bbox {box} lies outside the {width}x{height} image")
    return fixed, True


class RefCocoHfReader(Reader):
    """RefCOCO/+/g Hub mirrors as Parquet (jxu124/refcoco*, lmms-lab/RefCOCO*): one sample per sentence."""

    name = "refcoco-hf"
    dataset = "refcoco"
    description = "RefCOCO/+/g Hub Parquet mirrors: jxu124/refcoco* (train/val/test) or lmms-lab/RefCOCO* (eval)"
    Options = RefCocoHfOptions
    options: RefCocoHfOptions

    def input_files(self, input_path: str) -> list[Path]:
        root = Path(input_path)
        if root.is_file():
            return [root]
        if not root.is_dir():
            return []
        return sorted(p for p in root.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))

    @classmethod
    def detect(cls, path: str) -> bool:
        files = cls().input_files(path)
        if not files or not all(f.suffix == ".parquet" for f in files):
            return False
        try:
            return variant_of(pq.read_schema(files[0]).names) is not None
        except (pa.ArrowException, OSError):
            return False

    def _dataset(self, path: Path) -> str:
        if self.options.dataset:
            return self.options.dataset
        lowered = str(path).lower()
        if "refcocog" in lowered:
            return "refcocog"
        if "refcocoplus" in lowered or "refcoco+" in lowered or "refcoco_plus" in lowered:
            return "refcoco+"
        return "refcoco"

    def plan(self, input_path: str) -> list[Partition]:
        root = Path(input_path)
        if not root.exists():
            raise InputFileError(str(root), "does not exist", EXPECTED)
        files = self.input_files(input_path)
        if not files:
            raise InputFileError(str(root), "holds no .parquet files", EXPECTED)
        parts: list[Partition] = []
        for path in files:
            try:
                meta = pq.ParquetFile(path).metadata
                names = pq.read_schema(path).names
            except (pa.ArrowException, OSError) as exc:
                raise InputFileError(str(path), f"is not a readable Parquet file ({exc})", EXPECTED) from None
            variant = variant_of(names)
            if variant is None:
                raise InputFileError(str(path), f"has neither mirror's columns (it has {', '.join(names)})", EXPECTED)
            split = hub_split(path)
            wanted = self.options.split
            if variant == "lmms-lab" and wanted and wanted not in (split, toolkit_split(split, self._dataset(path))):
                continue  # one split per file (jxu124 rows carry their own split: filtered when read)
            for group in range(meta.num_row_groups):
                key = f"{path.stem}-rg{group:05d}"
                params = {"file": str(path), "group": group, "variant": variant, "hub_split": split}
                parts.append(Partition(len(parts), key, str(path), params))
        if self.options.extract_images is not None and not Path(self.options.extract_images).is_dir():
            raise UsageError(f"--extract-images folder {self.options.extract_images} does not exist")
        return parts

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        params = partition.params
        path = Path(params["file"])
        columns = JXU_COLUMNS + ("split", "ann_id") if params["variant"] == "jxu124" else LMMS_COLUMNS
        try:
            parquet = pq.ParquetFile(path)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            rows = parquet.read_row_group(params["group"], columns=present).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise InputFileError(str(path), f"is not a readable Parquet file ({exc})", EXPECTED) from None
        dataset = self._dataset(path)
        for k, row in enumerate(rows):
            where = f"row group {params['group']} row {k}"
            convert = self._jxu124 if params["variant"] == "jxu124" else self._lmms
            try:
                yield from convert(row, dataset, params["hub_split"], str(path), where)
            except _Problem as exc:
                yield Reject(exc.reason, f"{path}: {where}: {exc.message}", str(path), where, _small(row))
            except UnsafePath as exc:
                yield Reject(exc.reason, f"{path}: {where}: {exc.message}", str(path), where, _small(row))

    # --- jxu124 ---

    def _jxu124(self, row: dict[str, Any], dataset: str, hub: str, source: str, where: str) -> Iterator[ReadItem]:
        split = row.get("split") if row.get("split") in TOOLKIT_SPLITS else toolkit_split(hub, dataset)
        if self.options.split and split != self.options.split:
            yield Filtered("split", source, where, split=split)
            return
        ref_id = row.get("ref_id")
        if not isinstance(ref_id, int):
            raise _Problem("missing-key", f"ref_id {ref_id!r} is not an integer")
        info = _json_field(row, "raw_image_info")
        width, height = info.get("width"), info.get("height")
        if not all(_number(v) and v > 0 and float(v).is_integer() for v in (width, height)):
            raise _Problem("bad-size", f"raw_image_info width/height {width!r}/{height!r}")
        width, height = int(width), int(height)
        bbox = row.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise _Problem("bad-box", f"bbox {bbox!r} is not four finite numbers")
        anns = _json_field(row, "raw_anns")
        raw = anns.get("bbox")
        if isinstance(raw, list) and len(raw) == 4 and all(_number(v) for v in raw):
            xyxy = xywh_to_xyxy(*raw)
            if max(abs(a - b) for a, b in zip(xyxy, bbox, strict=True)) > BOX_AGREEMENT:
                raise _Problem("bad-box", f"bbox {bbox} is not raw_anns.bbox {raw} as xyxy: convention unknown")
        box, clipped = _checked([float(v) for v in bbox], width, height)
        image_path = row.get("image_path")
        if not isinstance(image_path, str) or not image_path:
            raise _Problem("missing-key", "image_path is not a string")
        file = image_path[len("coco/") :] if image_path.startswith("coco/") else image_path
        sentences = row.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise _Problem("bad-record", "has no sentences")
        image = ImageRef(file=file, id=str(info.get("id", anns.get("image_id"))), width=width, height=height)
        for j, sentence in enumerate(sentences):
            text = sentence.get(self.options.text) if isinstance(sentence, dict) else None
            sent_id = sentence.get("sent_id") if isinstance(sentence, dict) else None
            if not isinstance(text, str) or not text.strip() or not isinstance(sent_id, int):
                message = f"{source}: {where}: sentence {j} has no {self.options.text!r} text or sent_id"
                yield Reject("bad-text", message, source, f"{where} sentence {j}", sentence, split)
                continue
            text = text.strip()
            if clipped:
                yield Note("clipped-box")
            yield Sample(
                id=refcoco_id(dataset, SPLIT_BY[dataset], ref_id, sent_id),
                dataset=dataset,
                split=split,
                image=image,
                text=text,
                regions=[Region(phrase=text, span=(0, len(text)), boxes=[list(box)])],
                meta={"ref_id": ref_id, "ann_id": row.get("ann_id"), "sent_id": sent_id, "hf_split": hub},
            )

    # --- lmms-lab ---

    def _lmms(self, row: dict[str, Any], dataset: str, hub: str, source: str, where: str) -> Iterator[ReadItem]:
        question_id = row.get("question_id")
        if not isinstance(question_id, int | str):
            raise _Problem("missing-key", f"question_id {question_id!r}")
        image = row.get("image")
        data = image.get("bytes") if isinstance(image, dict) else None
        if not isinstance(data, bytes) or not data:
            raise _Problem("missing-image", "has no embedded image bytes")
        try:
            with Image.open(io.BytesIO(data)) as decoded:
                width, height = decoded.size
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise _Problem("missing-image", f"embedded image cannot be read ({exc})") from None
        bbox = row.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise _Problem("bad-box", f"bbox {bbox!r} is not four finite numbers")
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise _Problem("empty-box", f"bbox {bbox} (xywh) has no area")
        box, clipped = _checked(xywh_to_xyxy(*bbox), width, height)
        file_name = row.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise _Problem("missing-key", "file_name is not a string")
        answers = row.get("answer")
        answers = [answers] if isinstance(answers, str) else answers
        if not isinstance(answers, list) or not answers:
            raise _Problem("bad-text", "answer holds no expression")
        if self.options.extract_images:
            extract(self.options.extract_images, file_name, data)
        ref = ImageRef(file=file_name, id=None, width=width, height=height)
        for j, answer in enumerate(answers):
            if not isinstance(answer, str) or not answer.strip():
                yield Reject("bad-text", f"{source}: {where}: answer {j} is empty", source, f"{where} answer {j}")
                continue
            text = answer.strip()
            if clipped:
                yield Note("clipped-box")
            yield Sample(
                id=f"{dataset}/lmms-lab/{hub}/{question_id}/{j}",
                dataset=dataset,
                split=hub,
                image=ref,
                text=text,
                regions=[Region(phrase=text, span=(0, len(text)), boxes=[list(box)])],
                meta={"question_id": question_id, "evaluation_only": True},
            )


def extract(dest: str, name: str, data: bytes) -> None:
    """Write ``data`` to ``dest/name`` exactly once: complete or absent, never replacing a different file.

    The same image is embedded in many rows (and workers), so an existing file with the same bytes is fine;
    the bytes go to a hidden temporary beside it and are hard-linked into place (atomic, fails if taken).
    """
    try:
        target = create_under(dest, name)
    except UnsafePath as exc:
        if "already exists" not in exc.why:
            raise
        existing = resolve_under(dest, name)
        if existing.is_file() and not existing.is_symlink() and existing.read_bytes() == data:
            return
        raise
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with os.fdopen(open_new(temporary), "wb") as handle:
        handle.write(data)
    try:
        os.link(temporary, target)
    except FileExistsError:
        if target.read_bytes() != data:
            raise UnsafePath(name, "names a file that already exists in the destination") from None
    finally:
        temporary.unlink()


def _json_field(row: dict[str, Any], key: str) -> dict[str, Any]:
    value = row.get(key)
    try:
        data = orjson.loads(value) if isinstance(value, str | bytes) else value
    except orjson.JSONDecodeError:
        raise _Problem("bad-record", f"{key} is not JSON") from None
    if not isinstance(data, dict):
        raise _Problem("wrong-type", f"{key} is not a JSON object")
    return data


def _small(row: dict[str, Any]) -> dict[str, Any]:
    """The row without embedded image bytes (rejects stay readable)."""
    return {k: ("<bytes>" if k == "image" else v) for k, v in row.items() if k != "segmentation"}
