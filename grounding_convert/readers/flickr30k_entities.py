"""Flickr30K Entities reader (SOURCES.md §4): one sample per caption, one region per phrase mention.

The folder holds ``Sentences/<id>.txt`` (5 captions with ``[/EN#<chain>/<type> words]`` markup),
``Annotations/<id>.xml`` (PASCAL-VOC-like boxes keyed by chain id) and optionally the official
``train.txt`` / ``val.txt`` / ``test.txt`` id lists.  Text and phrase boundaries follow the official
``get_sentence_data`` (whitespace tokens, words joined by one space); every mention of a chain gets *all*
boxes named after that chain, since the release has no per-mention box link.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import boxes as B
from ..errors import InputFileError, Note, Reject, UsageError
from ..option_types import PER_PARTITION, bounded
from ..schema import Box, ImageRef, Region, Sample, flickr30k_id, image_keys
from .base import Partition, Reader, ReaderOptions, ReadItem

SPLITS = ("train", "val", "test")
UNLISTED = "unlisted"  # partition-key prefix of ids that no split file lists
NOTVISUAL_CHAIN = "0"
LAYOUT = "a Flickr30K Entities folder with Sentences/*.txt and Annotations/*.xml"

_HEADER = re.compile(r"\[/EN#(\d+)/([A-Za-z_]+(?:/[A-Za-z_]+)*)")


@dataclass
class Flickr30kEntitiesOptions(ReaderOptions):
    images_per_partition: int = bounded(500, PER_PARTITION)


# --- captions ----------------------------------------------------------------------------------------


class MarkupError(ValueError):
    """A caption whose bracket markup the official parser would misread."""


@dataclass(slots=True)
class Mention:
    phrase: str
    start: int
    end: int
    chain: str
    types: list[str]


def parse_caption(line: str) -> tuple[str, list[Mention]]:
    """Markup-free text and the phrase mentions with ``[start, end)`` offsets into it.

    Same tokenization as ``get_sentence_data``; inputs it would silently garble (nested or unclosed
    brackets, a ``]`` inside a word, an empty phrase) raise :class:`MarkupError` instead.
    """
    words: list[str] = []
    length = 0
    mentions: list[Mention] = []
    current: Mention | None = None
    phrase_words: list[str] = []
    for token in line.split():
        if current is None:
            if token.startswith("["):
                match = _HEADER.fullmatch(token)
                if match is None:
                    raise MarkupError(f"malformed phrase header {token!r}")
                current = Mention("", -1, -1, match.group(1), match.group(2).split("/"))
                phrase_words = []
                continue
            if "[" in token or "]" in token:
                raise MarkupError(f"stray bracket in {token!r}")
            word, closing = token, False
        else:
            if token.startswith("["):
                raise MarkupError(f"phrase for chain {current.chain} is not closed before {token!r}")
            closing = token.endswith("]")
            word = token[:-1] if closing else token
            if not word or "[" in word or "]" in word:
                raise MarkupError(f"bad phrase word {token!r}")
        start = length + (1 if words else 0)
        words.append(word)
        length = start + len(word)
        if current is not None:
            if not phrase_words:
                current.start = start
            phrase_words.append(word)
            if closing:
                current.end = length
                current.phrase = " ".join(phrase_words)
                mentions.append(current)
                current = None
    if current is not None:
        raise MarkupError(f"phrase for chain {current.chain} is not closed at the end of the line")
    return " ".join(words), mentions


# --- annotations -------------------------------------------------------------------------------------


class AnnotationError(ValueError):
    """The XML of an image is unusable as a whole (every caption of the image is rejected)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class Annotation:
    """One parsed XML: boxes per chain (clipped, with a clipped flag) and the chains that cannot be used."""

    width: int
    height: int
    names: set[str] = field(default_factory=set)
    boxes: dict[str, list[tuple[Box, bool]]] = field(default_factory=dict)
    bad: dict[str, tuple[str, str]] = field(default_factory=dict)  # chain -> (reason, message)
    scene: set[str] = field(default_factory=set)
    nobox: set[str] = field(default_factory=set)


def _size(root: ET.Element, tag: str) -> int:
    text = root.findtext(f"size/{tag}")
    try:
        value = float((text or "").strip())
    except ValueError:
        value = float("nan")
    if not (value > 0 and value == int(value)):
        raise AnnotationError("bad-size", f"image {tag} {text!r} is not a positive integer")
    return int(value)


def _box(obj: ET.Element, index: int, width: int, height: int) -> tuple[Box, bool]:
    """Canonical box of a ``<bndbox>`` and whether it was clipped; :class:`AnnotationError` if unusable."""
    where = f"object {index}"
    values: list[float] = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        text = obj.findtext(f"bndbox/{tag}")
        try:
            values.append(float((text or "").strip()))
        except ValueError:
            raise AnnotationError("bad-box", f"{where}: <{tag}> {text!r} is not a number") from None
    if not B.is_finite(values):
        raise AnnotationError("bad-box", f"{where}: box {values} is not finite")
    box = B.one_based_inclusive_to_xyxy(*values)
    if B.is_empty(box):
        raise AnnotationError("empty-box", f"{where}: box {values} (1-based inclusive) has no area")
    if B.is_inside(box, width, height):
        return box, False
    clipped = B.clip(box, width, height)
    if B.is_empty(clipped):
        raise AnnotationError("empty-box", f"{where}: box {values} lies outside the {width}x{height} image")
    return clipped, True


def parse_annotation(data: bytes) -> Annotation:
    """Parse one ``Annotations/<id>.xml``; a multi-name box object belongs to each of its chains."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise AnnotationError("bad-record", "XML with a DOCTYPE/ENTITY declaration is refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise AnnotationError("bad-record", f"not well-formed XML ({exc})") from None
    if root.tag != "annotation":
        raise AnnotationError("bad-record", f"root element is <{root.tag}>, expected <annotation>")
    ann = Annotation(width=_size(root, "width"), height=_size(root, "height"))
    for index, obj in enumerate(root.iter("object")):
        names = [(n.text or "").strip() for n in obj.findall("name")]
        names = [n for n in names if n]
        ann.names.update(names)
        if obj.find("bndbox") is not None:
            try:
                result = _box(obj, index, ann.width, ann.height)
            except AnnotationError as exc:
                for name in names:
                    ann.bad.setdefault(name, (exc.reason, exc.message))
            else:
                for name in names:
                    ann.boxes.setdefault(name, []).append(result)
        if (obj.findtext("scene") or "").strip() == "1":
            ann.scene.update(names)
        if (obj.findtext("nobndbox") or "").strip() == "1":
            ann.nobox.update(names)
    return ann


# --- reader ------------------------------------------------------------------------------------------


class Flickr30kEntitiesReader(Reader):
    """Captions of Flickr30K Entities with every phrase mention grounded to its chain's boxes."""

    name = "flickr30k-entities"
    dataset = "flickr30k_entities"
    description = "Flickr30K Entities (Sentences/*.txt + Annotations/*.xml + split lists)"
    Options = Flickr30kEntitiesOptions

    @classmethod
    def detect(cls, path: str) -> bool:
        p = Path(path)
        return (p / "Sentences").is_dir() and (p / "Annotations").is_dir()

    def input_files(self, input_path: str) -> list[Path]:
        root = Path(input_path)
        files = [root / f"{s}.txt" for s in SPLITS if (root / f"{s}.txt").is_file()]
        for sub, ext in (("Sentences", ".txt"), ("Annotations", ".xml")):
            folder = root / sub
            if folder.is_dir():  # scandir: file types from the listing, no stat per file (60,000 of them)
                with os.scandir(folder) as entries:
                    names = sorted(e.name for e in entries if e.name.endswith(ext) and e.name != ext and e.is_file())
                files += [folder / name for name in names]
        return files

    def plan(self, input_path: str) -> list[Partition]:
        """Group the caption files by split, in split-file order, N images per partition (no parsing)."""
        root = Path(input_path)
        per_partition = int(getattr(self.options, "images_per_partition", 500))
        if per_partition < 1:
            raise UsageError(f"images-per-partition must be at least 1, not {per_partition}")
        wanted = self.options.split
        if wanted is not None and wanted not in SPLITS:
            raise UsageError(f"Flickr30K Entities splits are {', '.join(SPLITS)}, not {wanted!r}")
        available = _caption_ids(root)
        groups = _split_groups(root, available)
        if wanted is not None:
            if not (root / f"{wanted}.txt").is_file():
                raise InputFileError(root / f"{wanted}.txt", "split file not found", f"the list of {wanted} ids")
            groups = [g for g in groups if g[0] == wanted]
        partitions: list[Partition] = []
        for split, ids, absent in groups:
            for n, start in enumerate(range(0, len(ids), per_partition)):
                chunk = ids[start : start + per_partition]
                params = {"root": str(root.absolute()), "split": split, "ids": chunk}
                if n == 0 and absent:
                    params["listed_without_files"] = absent
                partitions.append(
                    Partition(
                        index=len(partitions), key=f"{split or UNLISTED}-{n:05d}", source=str(root), params=params
                    )
                )
        return partitions

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        root = Path(partition.params["root"])
        split = partition.params["split"]
        if partition.params.get("listed_without_files"):
            yield Note("split-ids-without-files", partition.params["listed_without_files"])
        for image_id in partition.params["ids"]:
            yield from self._read_image(root, image_id, split)

    def _read_image(self, root: Path, image_id: str, split: str | None) -> Iterator[ReadItem]:
        sentences_path = root / "Sentences" / f"{image_id}.txt"
        xml_path = root / "Annotations" / f"{image_id}.xml"
        data = _read_bytes(sentences_path, "the caption file listed when the input was planned")
        ann: Annotation | None = None
        problem: tuple[str, str] | None = None
        try:
            ann = parse_annotation(xml_path.read_bytes())
        except FileNotFoundError:
            problem = ("unknown-reference", f"no annotation file {xml_path} for this image")
        except OSError as exc:
            problem = ("unknown-reference", f"annotation file {xml_path} cannot be read ({exc.strerror})")
        except AnnotationError as exc:
            problem = (exc.reason, f"{xml_path}: {exc.message}")
        for caption_index, line_no, raw in _caption_lines(data):
            position = f"caption {caption_index} (line {line_no})"
            where = f"{sentences_path} {position}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Reject(
                    "bad-text",
                    f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start})",
                    str(sentences_path),
                    position,
                    raw.decode("utf-8", "replace"),
                )
                continue
            try:
                text, mentions = parse_caption(line)
            except MarkupError as exc:
                yield Reject("bad-record", f"{where}: {exc}", str(sentences_path), position, line)
                continue
            if ann is None:
                reason, message = problem or ("bad-record", "annotation missing")
                yield Reject(reason, f"{where}: {message}", str(sentences_path), position, line)
                continue
            yield from self._sample(
                image_id,
                split,
                caption_index,
                text,
                mentions,
                ann,
                str(sentences_path),
                position,
                line,
                xml_path,
            )

    def _sample(
        self,
        image_id: str,
        split: str | None,
        caption_index: int,
        text: str,
        mentions: list[Mention],
        ann: Annotation,
        source: str,
        position: str,
        line: str,
        xml_path: Path,
    ) -> Iterator[ReadItem]:
        regions: list[Region] = []
        clipped = 0
        for m in mentions:
            if m.chain != NOTVISUAL_CHAIN:
                if m.chain not in ann.names:
                    yield Reject(
                        "unknown-reference",
                        f"{source} {position}: chain {m.chain} ({m.phrase!r}) is not in {xml_path}",
                        source,
                        position,
                        line,
                    )
                    return
                if m.chain in ann.bad:
                    reason, message = ann.bad[m.chain]
                    yield Reject(
                        reason,
                        f"{source} {position}: chain {m.chain} ({m.phrase!r}): {xml_path} {message}",
                        source,
                        position,
                        line,
                    )
                    return
            chain_boxes = ann.boxes.get(m.chain, []) if m.chain != NOTVISUAL_CHAIN else []
            clipped += sum(1 for _, was_clipped in chain_boxes if was_clipped)
            regions.append(
                Region(
                    phrase=m.phrase,
                    span=(m.start, m.end),
                    boxes=[list(b) for b, _ in chain_boxes],
                    category="/".join(m.types),
                )
            )
        chains = [m.chain for m in mentions]
        sample_id = flickr30k_id(image_id, caption_index)
        yield Sample(
            id=sample_id,
            dataset=self.dataset,
            split=split,
            image=ImageRef(f"{image_id}.jpg", image_id, ann.width, ann.height, keys=image_keys(flickr=image_id)),
            text=text,
            regions=regions,
            meta={
                "chain_ids": " ".join(chains),
                "scene_chains": " ".join(c for c in dict.fromkeys(chains) if c in ann.scene),
                "nobox_chains": " ".join(c for c in dict.fromkeys(chains) if c in ann.nobox),
            },
        )
        if clipped:
            yield Note("clipped-box", clipped, {"sample_id": sample_id, "source": str(xml_path)})


# --- helpers -----------------------------------------------------------------------------------------


def _read_bytes(path: Path, expected: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror})", expected) from None


def _caption_lines(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(0-based caption index, 1-based line number, raw bytes) of every non-blank line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    index = 0
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield index, line_no, raw
            index += 1


def _caption_ids(root: Path) -> set[str]:
    if not root.is_dir():
        raise InputFileError(root, "is not a folder" if root.exists() else "does not exist", LAYOUT)
    for sub in ("Sentences", "Annotations"):
        if not (root / sub).is_dir():
            raise InputFileError(root / sub, "folder not found", LAYOUT)
    try:
        with os.scandir(root / "Sentences") as entries:
            return {e.name[:-4] for e in entries if e.name.endswith(".txt") and e.is_file()}
    except OSError as exc:
        raise InputFileError(root / "Sentences", f"cannot be listed ({exc.strerror})", LAYOUT) from None


def _id_order(image_id: str) -> tuple[bool, int, str]:
    numeric = image_id.isascii() and image_id.isdigit()
    return (not numeric, int(image_id) if numeric else 0, image_id)


def _split_groups(root: Path, available: set[str]) -> list[tuple[str | None, list[str], int]]:
    """Ids per split in split-file order (first listing wins), then unlisted ids sorted numerically.

    Ids a split file lists without a caption file are skipped (excerpts ship the full official lists)
    but counted, third in each tuple, so a half-extracted download shows in the summary.
    """
    seen: set[str] = set()
    groups: list[tuple[str | None, list[str]]] = []
    for split in SPLITS:
        path = root / f"{split}.txt"
        if not path.is_file():
            continue
        try:
            listed = _read_bytes(path, f"the list of {split} image ids").decode("utf-8").split()
        except UnicodeDecodeError:
            raise InputFileError(path, "is not valid UTF-8", f"the list of {split} image ids") from None
        ids = []
        for image_id in listed:
            if image_id in available and image_id not in seen:
                seen.add(image_id)
                ids.append(image_id)
        groups.append((split, ids, len(set(listed) - available)))
    rest = sorted(available - seen, key=_id_order)
    if rest:
        groups.append((None, rest, 0))
    return groups
