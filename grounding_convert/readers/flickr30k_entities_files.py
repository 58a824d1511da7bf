"""Flickr30K Entities' two native file formats (SOURCES.md §4): the caption markup of ``Sentences/<id>.txt``
and the PASCAL-VOC-like ``Annotations/<id>.xml``, each parsed into plain values for the reader."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from .. import boxes as B
from ..schema import Box

_HEADER = re.compile(r"\[/EN#(\d+)/([A-Za-z_]+(?:/[A-Za-z_]+)*)")


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
    # per chain with boxes: their corners one after another, and how many were clipped (for the block
    # columns and the clipped-box notes of the image's five captions, worked out once)
    corners: dict[str, list[float]] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)


def _child_text(parents: list[ET.Element], tag: str) -> str | None:
    """Text of the first ``tag`` child of any of ``parents`` (in document order; ``""`` when empty, None when
    there is none): ``findtext("parent/tag")`` without compiling an ElementPath per call, which took two
    thirds of this reader's XML time."""
    for parent in parents:
        for child in parent:
            if child.tag == tag:
                return child.text or ""
    return None


def _size(root: ET.Element, tag: str) -> int:
    text = _child_text([element for element in root if element.tag == "size"], tag)
    try:
        value = float((text or "").strip())
    except ValueError:
        value = float("nan")
    if not (value > 0 and value == int(value)):
        raise AnnotationError("bad-size", f"image {tag} {text!r} is not a positive integer")
    return int(value)


def _box(frames: list[ET.Element], index: int, width: int, height: int) -> tuple[Box, bool]:
    """Canonical box of an object's ``<bndbox>`` elements (each corner from the first that has it) and whether
    it was clipped; :class:`AnnotationError` if unusable."""
    where = f"object {index}"
    values: list[float] = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        text = _child_text(frames, tag)
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
        names: list[str] = []
        frames: list[ET.Element] = []
        scene = nobox = None  # the first <scene> / <nobndbox>, as findtext reads them
        for child in obj:  # one pass over the object's children
            tag = child.tag
            if tag == "name":
                name = (child.text or "").strip()
                if name:
                    names.append(name)
            elif tag == "bndbox":
                frames.append(child)
            elif tag == "scene" and scene is None:
                scene = child.text or ""
            elif tag == "nobndbox" and nobox is None:
                nobox = child.text or ""
        ann.names.update(names)
        if frames:
            try:
                result = _box(frames, index, ann.width, ann.height)
            except AnnotationError as exc:
                for name in names:
                    ann.bad.setdefault(name, (exc.reason, exc.message))
            else:
                for name in names:
                    ann.boxes.setdefault(name, []).append(result)
        if scene is not None and scene.strip() == "1":
            ann.scene.update(names)
        if nobox is not None and nobox.strip() == "1":
            ann.nobox.update(names)
    for chain, found in ann.boxes.items():
        ann.corners[chain] = [value for box, _ in found for value in box]
        ann.clipped[chain] = sum(was_clipped for _, was_clipped in found)
    return ann
