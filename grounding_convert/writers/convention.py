"""A model's record convention as plain data (DESIGN §7: a writer is a description, not a program).

A :class:`Convention` says what a model's records say: the grid a box is quantized on, how one box and
several are spelled, where boxes go in a caption, the answer of each task, which text the source may not
contain, and the record layout.  Shared code turns it into both renderers: the per-record one
(:class:`~grounding_convert.writers.base.Writer`, readable, the reference and the test oracle) and the
columnar one (:mod:`grounding_convert.writers.batch`).  Nothing here names a model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from string import Formatter
from typing import Literal

from ..boxes import PatchGrid, Quantizer
from ..errors import UsageError

Grid = Quantizer | PatchGrid


@dataclass(frozen=True)
class Spelling:
    """One box as literal text around its grid values, and how a phrase's boxes are put together.

    ``box`` mixes literals and value positions: ``("<box>(", 0, ",", 1, "),(", 2, ",", 3, ")</box>")``.
    The order of the positions is the axis order (a y-first model lists ``1, 0, 3, 2``).
    """

    box: tuple[str | int, ...]
    pad: int = 0  # zero padding of every value (f"{v:0{pad}d}")
    joiner: str = ""  # between the boxes of one phrase
    group: tuple[str, str] = ("", "")  # around all the boxes of one phrase

    def value(self, v: int) -> str:
        return f"{v:0{self.pad}d}" if self.pad else str(v)

    def one(self, q: Sequence[int]) -> str:
        return "".join(piece if isinstance(piece, str) else self.value(q[piece]) for piece in self.box)

    def group_of(self, spelled: Iterable[str]) -> str:
        return self.group[0] + self.joiner.join(spelled) + self.group[1]


@dataclass(frozen=True)
class Tagging:
    """Where a grounded phrase's boxes go in a caption: ``open + phrase + close + boxes``.

    ``space_inside``: the space before a phrase moves inside ``open``, and a phrase at the very start
    gets one (Qwen-VL's ``<ref>``, KOSMOS-2's ``<phrase>``).  ``lead`` is put before the caption first
    (KOSMOS-2 writes ``<grounding> An image of``).
    """

    open: str = ""
    close: str = ""
    space_inside: bool = False
    lead: str = ""


@dataclass(frozen=True)
class Conversation:
    """Records with a two-turn ``conversations`` column: ``[{keys[0]: role, keys[1]: text}, …]``."""

    keys: tuple[str, str]
    roles: tuple[str, str] = ("user", "assistant")
    head: str = ""  # before the prompt in the user turn; "{image}" is the record's image path


@dataclass(frozen=True)
class Columns:
    """Records with flat string columns, each the concatenation of record values.

    Values: ``id``, ``image_id``, ``text`` (the source phrase or caption, as given), ``region_coord``
    (the region's boxes' union in pixels, two decimals; empty for captions), ``prompt``, ``answer``.
    """

    columns: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Listing:
    """An answer listing labelled boxes (``{objects}``) instead of tagging them into a caption.

    ``item`` is a template over ``{label}`` and ``{boxes}`` (the region's boxes in the convention's spelling;
    one item per box when ``per_box``); items are joined by ``joiner`` and wrapped in ``group``.  REC lists
    its one region under its phrase, the grounded caption every tagged span under its text.  ``json_labels``
    writes each label as a JSON string (JSON answers).  ``{phrases}`` in a grounded-caption prompt is the
    distinct labels joined by ``joiner``.
    """

    item: str
    joiner: str = ""
    group: tuple[str, str] = ("", "")
    per_box: bool = False
    json_labels: bool = False

    def compiled(self) -> tuple[Piece, ...]:
        return compile_template(self.item, ("label", "boxes"), "listing", "objects")


Normalizer = Literal["none", "strip", "pre_caption"]

# The region tasks and the caption: what the prompt's one placeholder is filled with (a grounded-caption
# prompt may name the ``caption`` text or, with a listing, its distinct ``phrases``).
PROMPT_SLOT = {"rec": "phrase", "reg": "boxes", "grounded-caption": None}


@dataclass(frozen=True)
class Convention:
    """Everything that differs between two models' records (see the module docstring)."""

    grid: Grid
    spelling: Spelling
    tagging: Tagging
    layout: Conversation | Columns
    #: template placeholder of each task's prompt: {"rec": name of the phrase, "reg": name of the boxes}
    placeholders: tuple[tuple[str, str], ...]
    #: answer of each task, over {phrase}, {boxes} and {caption} (the tagged caption)
    answers: tuple[tuple[str, str], ...]
    #: text the source must not contain (it would be read back as markup): refused with render-failed
    reserved: tuple[str, ...] = ()
    #: also refused inside phrases (KOSMOS-2 cannot tag a phrase holding "<")
    phrase_reserved: tuple[str, ...] = ()
    #: how a phrase (and a tagged caption) is normalized before the model sees it
    normalize: Normalizer = "none"
    normalize_caption: bool = False
    #: empty text is refused (bad-text)
    require_text: bool = True
    #: several boxes of a phrase are spelled as their union (one box)
    union_boxes: bool = False
    #: the most UTF-8 bytes an image path may have in the record (None: no limit)
    max_image_bytes: int | None = None
    #: answers holding ``{objects}`` list labelled boxes this way
    listing: Listing | None = None

    def placeholder(self, task: str) -> str | None:
        return dict(self.placeholders).get(task)

    def answer(self, task: str) -> tuple[Piece, ...]:
        return compile_template(dict(self.answers)[task], ("phrase", "boxes", "caption", "objects"), "answer", task)

    def writes_caption(self) -> bool:
        """Whether the caption's whole text is in the record (else only its grounded phrases are)."""
        answer = self.answer("grounded-caption")
        return self.placeholder("grounded-caption") == "caption" or any(
            isinstance(p, Field) and p.name == "caption" for p in answer
        )

    def markup(self) -> re.Pattern[str] | None:
        return _alternatives(self.reserved)

    def phrase_markup(self) -> re.Pattern[str] | None:
        return _alternatives(self.reserved + self.phrase_reserved)


def _alternatives(words: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(re.escape(w) for w in words)) if words else None


# --- templates -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A placeholder inside a compiled template (``conversion``/``spec`` as in ``str.format``)."""

    name: str
    conversion: str | None = None
    spec: str = ""

    @property
    def plain(self) -> bool:
        return self.conversion is None and not self.spec


Piece = str | Field


def compile_template(template: str, names: Sequence[str], source: str, task: str) -> tuple[Piece, ...]:
    """``str.format`` syntax split once into literals and fields; a field not in ``names`` is a usage error."""
    pieces: list[Piece] = []
    try:
        for literal, name, spec, conversion in Formatter().parse(template):
            if literal:
                pieces.append(literal)
            if name is None:
                continue
            if name not in names:
                raise ValueError(f"unknown placeholder {{{name}}}")
            pieces.append(Field(name, conversion, spec or ""))
    except ValueError as exc:
        known = ", ".join("{" + n + "}" for n in names) or "none"
        raise UsageError(
            f"{source}: {task} template {template!r} is not usable ({exc}); placeholders: {known}"
        ) from exc
    return tuple(pieces)


def fill(pieces: Sequence[Piece], values: dict[str, str]) -> str:
    """A compiled template with its fields filled (the per-record path)."""
    out = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        value = values[piece.name]
        if not piece.plain:
            value = format(repr(value) if piece.conversion == "r" else str(value), piece.spec)
        out.append(value)
    return "".join(out)


def around(pieces: Sequence[Piece], name: str | None) -> tuple[str, str] | None:
    """(text before, text after) the template's one plain ``{name}`` (all text for ``name=None``), or None
    when the template has any other shape: the columnar path then leaves the task to the per-record one."""
    fields = [p for p in pieces if isinstance(p, Field)]
    if name is None:
        return None if fields else ("".join(pieces), "")
    if len(fields) != 1 or fields[0].name != name or not fields[0].plain:
        return None
    at = list(pieces).index(fields[0])
    return "".join(pieces[:at]), "".join(pieces[at + 1 :])  # type: ignore[arg-type]


# --- text ----------------------------------------------------------------------------------------------

_SPACES = re.compile(r"\s{2,}")


def pre_caption(text: str) -> str:
    """OFA's text normalization (OFA-Sys/OFA data/ofa_dataset.py L68-84), without its ``max_words`` cut."""
    text = text.lower().lstrip(",.!?*#:;~").replace("-", " ").replace("/", " ").replace("<person>", "person")
    return _SPACES.sub(" ", text).rstrip("\n").strip(" ")


NORMALIZERS: dict[str, Callable[[str], str]] = {"none": lambda s: s, "strip": str.strip, "pre_caption": pre_caption}


def tag_caption(text: str, tagging: Tagging, tagged: Sequence[tuple[tuple[int, int], str]]) -> str:
    """The caption with each ``(span, boxes)`` tagged per ``tagging``, in text order (the reference)."""
    lead = tagging.lead
    body, shift = lead + text, len(lead)
    parts: list[str] = []
    cursor = 0
    for (span_start, span_end), boxes in tagged:
        start, end = span_start + shift, span_end + shift
        spaced = tagging.space_inside and (start == 0 or (start > cursor and body[start - 1] == " "))
        parts.append(body[cursor : start - 1 if spaced and start > 0 else start])
        parts += [tagging.open, " " if spaced else "", body[start:end], tagging.close, boxes]
        cursor = end
    parts.append(body[cursor:])
    return "".join(parts)
