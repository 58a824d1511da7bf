"""``export --layout cogvlm2``: regroup a finished CogVLM conversion into CogVLM2's fine-tuning folders.

THUDM/CogVLM2 ``finetune_demo/peft_lora.py`` (``ConversationDataset``) reads one folder per dataset:

* L44 ``images/``, listed with ``os.listdir``; L73 the label of image ``f`` is
  ``labels_en/`` + ``f.replace('.jpg', '.json')``, so every image is named ``<stem>.jpg`` (Pillow opens an
  image by its content, L75 ``Image.open(img_name).convert('RGB')``, so a PNG under that name still loads);
* L77-85 ``label_data["conversations"][2 * i]["content"]`` / ``[2 * i + 1]``: one JSON per image holding all
  its rounds, user then assistant (``finetune_demo/README.md``: ``{"role": …, "content": …}`` turns).

Our records are one (or, with ``--turns``, a few) rounds each, in shards.  Export streams them once into
on-disk hash buckets by (split, image stem), then writes each bucket's images: memory holds one bucket
(about :data:`BUCKET_RECORDS` records) and a bounded write buffer, whatever the dataset's size.

Files named from data (split, image stem) are created through ``safe_paths.create_under``: never outside
the destination, never through a symlink planted in it, never over an existing file.  Every file is logged
in ``.grounding-convert-export/files.jsonl`` before it is created, so a later export into the same folder
deletes exactly those files (and refuses a folder holding anything else).
"""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any
from zlib import crc32

import orjson

from ..engine.lock import OutputLock
from ..errors import RecordError, UsageError
from ..images import open_image
from ..output.finalize import MANIFEST
from ..output.storage import Store
from ..safe_paths import UnsafePath, create_under, open_new, resolve_under
from .validate import iter_records

LAYOUTS = ("cogvlm2",)
STATE_DIR = ".grounding-convert-export"
FILES_LOG = f"{STATE_DIR}/files.jsonl"
SUMMARY = f"{STATE_DIR}/export.json"
BUCKETS = f"{STATE_DIR}/buckets"
BUCKET_RECORDS = 10_000  # records per bucket on average: the most export holds in memory at once
MAX_BUCKETS = 65_536
BUFFER_BYTES = 32 << 20  # bucket lines buffered before they are appended to their files
LABELS = "labels_en"  # peft_lora.py L46 (labels_zh for Chinese labels)
IMAGES = "images"


@dataclass
class ExportResult:
    dest: str
    records: int = 0  # records read from the output
    images: int = 0  # label files written (one per image and split)
    rounds: int = 0  # user/assistant pairs in them
    skipped: Counter[str] = field(default_factory=Counter)  # reason → images left out
    splits: Counter[str] = field(default_factory=Counter)  # split → label files

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": "cogvlm2",
            "records": self.records,
            "images": self.images,
            "rounds": self.rounds,
            "skipped": dict(sorted(self.skipped.items())),
            "splits": dict(sorted(self.splits.items())),
        }


def export(output: str, layout: str, dest: str, image_root: str | None = None, copy: bool = False) -> ExportResult:
    """Write ``dest/{split}/images/<stem>.jpg`` (symlinks, or copies) and ``dest/{split}/labels_en/<stem>.json``."""
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r} (layouts: {', '.join(LAYOUTS)})")
    store = Store(output)
    OutputLock(store, command="export").probe()  # not while a convert (--overwrite, --resume) rewrites it
    if not store.exists(MANIFEST):
        raise UsageError(f"{output} has no {MANIFEST}: not a finished grounding-convert output")
    manifest = store.read_json(MANIFEST)
    job = manifest["job"]
    if job["writer"] != "cogvlm":
        raise UsageError(f"--layout cogvlm2 regroups cogvlm records; {output} holds {job['writer']!r} records")
    root = _image_root(image_root, job)
    target = Path(dest)
    _prepare(target)
    result = ExportResult(dest=str(target))
    total = sum(int(shard["records"]) for shard in manifest["shards"])
    count = max(1, min(MAX_BUCKETS, math.ceil(total / BUCKET_RECORDS)))
    prefix = (job.get("writer_options") or {}).get("image_prefix")
    with _Log(target) as log:
        _fill_buckets(store, manifest, job["format"], target, count, prefix, result)
        for index in range(count):
            for (split, stem), group in sorted(_read_bucket(target, index).items()):
                _write_image(target, root, split, stem, group, copy, log, result)
        shutil.rmtree(target / BUCKETS)
    _write_summary(target, result)
    return result


def _image_root(given: str | None, job: dict[str, Any]) -> str:
    """``--image-root``, else the one the conversion was given."""
    root = given
    for options in (job.get("reader_options") or {}, job.get("writer_options") or {}, job):
        root = root or options.get("image_root")
    if not root:
        raise UsageError("export needs --image-root: the folder the records' image paths are relative to")
    if not Path(root).is_dir():
        raise UsageError(f"--image-root {root} is not a folder")
    return str(root)


# --- the destination ----------------------------------------------------------------------------------


def _prepare(dest: Path) -> None:
    """An empty (or new) folder; a previous export is removed first, file by file from its log."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise UsageError(f"--dest {dest} is not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    entries = _entries(dest)
    if not entries:
        return
    log = dest / FILES_LOG
    state = dest / STATE_DIR
    if state.is_symlink() or log.is_symlink() or not log.is_file():
        raise UsageError(f"--dest {dest} is not empty and holds no earlier export by grounding-convert; refusing")
    ours = {orjson.loads(line) for line in log.read_bytes().splitlines() if line.strip()}
    foreign = sorted(e for e in entries if e not in ours and not e.startswith(STATE_DIR + "/"))
    if foreign:
        raise UsageError(
            f"--dest {dest} holds {len(foreign)} file(s) no earlier export wrote (first: {foreign[0]}); refusing"
        )
    folders: set[PurePosixPath] = set()
    for rel in ours:
        path = dest / rel
        if os.path.lexists(path):
            path.unlink()
        folders.update(p for p in PurePosixPath(rel).parents if p != PurePosixPath("."))
    shutil.rmtree(state)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):  # the folders files were put in
        path = dest / folder
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()


def _entries(dest: Path) -> list[str]:
    """Every non-folder entry under ``dest`` (symlinks included, never followed), as relative POSIX paths."""
    out = []
    stack = [dest]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    out.append(Path(entry.path).relative_to(dest).as_posix())
    return out


class _Log:
    """Appends each file's relative path before the file is created (so nothing written goes unlisted)."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.fh: IO[bytes] | None = None

    def __enter__(self) -> _Log:
        (self.dest / STATE_DIR).mkdir(exist_ok=False)
        self.fh = os.fdopen(open_new(self.dest / FILES_LOG), "wb")
        return self

    def add(self, rel: str) -> None:
        assert self.fh is not None
        self.fh.write(orjson.dumps(rel) + b"\n")
        self.fh.flush()

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()


def _write_summary(dest: Path, result: ExportResult) -> None:
    tmp = dest / f"{SUMMARY}.tmp"
    with os.fdopen(open_new(tmp), "wb") as fh:
        fh.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    tmp.rename(dest / SUMMARY)


# --- grouping by image ------------------------------------------------------------------------------------


def _fill_buckets(
    store: Store,
    manifest: dict[str, Any],
    fmt: str,
    dest: Path,
    count: int,
    prefix: str | None,
    result: ExportResult,
) -> None:
    """One pass over the records: each goes, as a JSON line, to the bucket of its (split, image stem)."""
    folder = dest / BUCKETS
    folder.mkdir()
    buffers: list[list[bytes]] = [[] for _ in range(count)]
    buffered = 0
    for shard in manifest["shards"]:
        split = shard["split"]
        for _, record in iter_records(store, [shard], fmt):
            result.records += 1
            name = _image_name(record.get("image"), prefix)
            stem = PurePosixPath(name).stem
            line = orjson.dumps([split, stem, name, record.get("id"), record.get("conversations")]) + b"\n"
            index = crc32(f"{split}\x00{stem}".encode()) % count
            buffers[index].append(line)
            buffered += len(line)
            if buffered >= BUFFER_BYTES:
                _flush(folder, buffers)
                buffered = 0
    _flush(folder, buffers)


def _image_name(image: Any, prefix: str | None) -> str:
    """The record's image path relative to the image root (without the conversion's ``--image-prefix``)."""
    name = str(image)
    if prefix:
        head = prefix.rstrip("/") + "/"
        if name.startswith(head):
            name = name[len(head) :]
    return name


def _flush(folder: Path, buffers: list[list[bytes]]) -> None:
    for index, lines in enumerate(buffers):
        if lines:
            with open(folder / f"{index:05d}.jsonl", "ab") as fh:
                fh.writelines(lines)
            buffers[index] = []


@dataclass
class _Group:
    names: list[str] = field(default_factory=list)  # distinct image paths with this stem (one, normally)
    turns: list[Any] = field(default_factory=list)
    records: list[str] = field(default_factory=list)


def _read_bucket(dest: Path, index: int) -> dict[tuple[str, str], _Group]:
    path = dest / BUCKETS / f"{index:05d}.jsonl"
    groups: dict[tuple[str, str], _Group] = {}
    if not path.exists():
        return groups
    with open(path, "rb") as fh:
        for line in fh:
            split, stem, name, record_id, turns = orjson.loads(line)
            group = groups.setdefault((split, stem), _Group())
            if name not in group.names:
                group.names.append(name)
            group.turns.append(turns)
            group.records.append(record_id)
    return groups


# --- one image ---------------------------------------------------------------------------------------------


def _write_image(
    dest: Path, root: str, split: str, stem: str, group: _Group, copy: bool, log: _Log, result: ExportResult
) -> None:
    """``images/<stem>.jpg`` and ``labels_en/<stem>.json`` for one image of one split (or a counted skip)."""
    if len(group.names) > 1:
        result.skipped["name-clash"] += 1  # two images share a file stem: CogVLM2 pairs files by name
        return
    try:
        turns = _rounds(group)
        source = resolve_under(root, group.names[0])
        if not source.is_file():
            raise RecordError("missing-image", f"{group.names[0]!r} is not a file under {root}")
        if not stem or "\\" in stem:
            raise UnsafePath(stem, "is not a plain file name")
        image_name = f"{stem}.jpg"
        image_rel = f"{split}/{IMAGES}/{image_name}"
        label_rel = f"{split}/{LABELS}/{image_name.replace('.jpg', '.json')}"  # peft_lora.py L73, verbatim
        image_path = create_under(dest, image_rel)
        label_path = create_under(dest, label_rel)
    except RecordError as exc:
        result.skipped[exc.reason] += 1
        return
    log.add(image_path.relative_to(dest.resolve()).as_posix())
    if copy:
        # open_image: O_NOFOLLOW and regular files only, so a symlink swapped in after the check is not read
        try:
            src = open_image(root, group.names[0])
        except RecordError as exc:  # swapped for a symlink or a FIFO since the check: skipped, counted
            result.skipped[exc.reason] += 1
            return
        with src, os.fdopen(open_new(image_path), "wb") as out:
            shutil.copyfileobj(src, out)
    else:
        os.symlink(source, image_path)
    log.add(label_path.relative_to(dest.resolve()).as_posix())
    with os.fdopen(open_new(label_path), "wb") as fh:
        fh.write(orjson.dumps({"conversations": turns}, option=orjson.OPT_INDENT_2) + b"\n")
    result.images += 1
    result.rounds += len(turns) // 2
    result.splits[split] += 1


def _rounds(group: _Group) -> list[dict[str, str]]:
    """All turns of an image's records, in record order; each must alternate user / assistant."""
    out: list[dict[str, str]] = []
    for record_id, turns in zip(group.records, group.turns, strict=True):
        ok = isinstance(turns, list) and turns and len(turns) % 2 == 0
        for i, turn in enumerate(turns if ok else []):
            role = "user" if i % 2 == 0 else "assistant"
            if not isinstance(turn, dict) or turn.get("role") != role or not isinstance(turn.get("content"), str):
                ok = False
                break
        if not ok:
            raise RecordError("bad-record", f"record {record_id!r} is not user/assistant turns with 'content'")
        out += [{"role": turn["role"], "content": turn["content"]} for turn in turns]
    return out
