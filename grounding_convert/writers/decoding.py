"""Records read back through the same :class:`~.convention.Convention` that wrote them.

A writer whose boxes are spelled by a convention alone (no hook of its own) gets its ``parse`` here: the box
regex comes from the :class:`~.convention.Spelling` pieces, the phrase around it from the
:class:`~.convention.Tagging`, labelled lists from the :class:`~.convention.Listing`, and the record's prompt
and answer from the layout, so rendering and parsing cannot drift apart.  Nothing here names a model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import RecordError
from ..schema import Box
from .base import Decoded, Writer, record_size
from .convention import Columns, Convention, Field, Spelling

JSON_STRING = r'"(?:[^"\\]|\\.)*"'


def box_regex(spelling: Spelling, named: bool = True) -> str:
    """One box of ``spelling``; groups ``v0``… hold the grid values by their index (axis order undone)."""
    out = []
    for piece in spelling.box:
        if isinstance(piece, str):
            out.append(re.escape(piece))
        else:
            out.append(f"(?P<v{piece}>[0-9]+)" if named else "[0-9]+")
    return "".join(out)


def group_regex(spelling: Spelling) -> str:
    """One phrase's boxes (group ``body``)."""
    one = box_regex(spelling, named=False)
    head, tail = (re.escape(t) for t in spelling.group)
    return f"{head}(?P<body>{one}(?:{re.escape(spelling.joiner)}{one})*){tail}"


class ConventionParse(Writer):
    """A writer whose ``parse`` is derived from its convention (see the module docstring)."""

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        convention = self.convention
        assert convention is not None
        decode = self.box_decoder(record)
        prompt, answer = self.prompt_answer(record)
        task = record.get("task")
        if task == "reg":
            return [Decoded(answer.strip(), [b for g in groups(prompt, convention, decode) for b in g.boxes])]
        pieces = convention.answer(task) if task in dict(convention.answers) else ()
        if any(isinstance(p, Field) and p.name == "objects" for p in pieces):
            return listing(answer, pieces, convention, decode)
        return groups(answer, convention, decode)

    def prompt_answer(self, record: dict[str, Any]) -> tuple[str, str]:
        """The prompt and the answer text of a record in the convention's layout."""
        layout = self.convention.layout
        if not isinstance(layout, Columns):
            return self.turns(record)
        names = {parts: name for name, parts in layout.columns}
        texts = []
        for value in ("prompt", "answer"):
            text = record.get(names[(value,)])
            if not isinstance(text, str):
                raise RecordError("missing-key", f"record {record.get('id')!r} needs a string {names[(value,)]!r}")
            texts.append(text)
        return texts[0], texts[1]

    def box_decoder(self, record: dict[str, Any]) -> Callable[[list[int]], Box]:
        """Grid values → pixel box for this record (a resized grid reads its size columns from the record)."""
        width, height = record_size(record)
        grid = self.convention.grid
        if grid.columns:
            new = [record.get(name) for name in grid.columns]
            if not all(type(v) is int and v > 0 for v in new):
                raise RecordError("bad-size", f"record {record.get('id')!r} has no usable {'/'.join(grid.columns)}")
            qx, qy = grid.axis(new[0]), grid.axis(new[1])
        else:
            qx = qy = grid

        def decode(q: list[int]) -> Box:
            if not (all(qx.in_range(v) for v in q[0::2]) and all(qy.in_range(v) for v in q[1::2])):
                raise RecordError("bad-box", f"box {q} has a coordinate outside 0..{qx.max_index}/{qy.max_index}")
            if q[0] > q[2] or q[1] > q[3]:
                raise RecordError("bad-box", f"box {q} has its corners the wrong way round")
            return [qx.decode(q[0], width), qy.decode(q[1], height), qx.decode(q[2], width), qy.decode(q[3], height)]

        return decode


def _boxes(body: str, spelling: Spelling, decode: Callable[[list[int]], Box]) -> list[Box]:
    one = re.compile(box_regex(spelling))
    return [decode([int(m.group(f"v{i}")) for i in range(4)]) for m in one.finditer(body)]


def groups(text: str, convention: Convention, decode: Callable[[list[int]], Box]) -> list[Decoded]:
    """Every box group of ``text`` in order, with the tagged phrase right before it (or None)."""
    spelling, tagging = convention.spelling, convention.tagging
    pattern = group_regex(spelling)
    if tagging.open or tagging.close:
        pattern = f"(?:{re.escape(tagging.open)}(?P<phrase>.*?){re.escape(tagging.close)})?{pattern}"
    out = []
    for match in re.finditer(pattern, text, re.S):
        phrase = match.groupdict().get("phrase")
        out.append(Decoded(phrase.strip() if phrase else phrase, _boxes(match.group("body"), spelling, decode)))
    return out


def listing(
    text: str, pieces: tuple[Any, ...], convention: Convention, decode: Callable[[list[int]], Box]
) -> list[Decoded]:
    """An ``{objects}`` answer: items in order; consecutive boxes of one label (``per_box``) regroup."""
    listing_ = convention.listing
    at = next(i for i, p in enumerate(pieces) if isinstance(p, Field))
    head = "".join(p for p in pieces[:at] if isinstance(p, str)) + listing_.group[0]
    tail = listing_.group[1] + "".join(p for p in pieces[at + 1 :] if isinstance(p, str))
    if not (text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail)):
        raise RecordError("bad-box", f"answer {text!r} is not a list {head!r}…{tail!r}", text)
    body = text[len(head) : len(text) - len(tail)]
    label = JSON_STRING if listing_.json_labels else ".*?"
    boxes = box_regex(convention.spelling, named=False) if listing_.per_box else group_regex(convention.spelling)
    item = []
    for piece in listing_.compiled():
        if isinstance(piece, str):
            item.append(re.escape(piece))
        else:
            item.append(f"(?P<label>{label})" if piece.name == "label" else f"(?P<items>{boxes})")
    joiner = re.escape(listing_.joiner)
    pattern = re.compile("".join(item) + (f"(?={joiner}|\\Z)" if listing_.joiner else ""), re.S)
    out: list[Decoded] = []
    pos = 0
    while pos < len(body) or not out:
        match = pattern.match(body, pos)
        if match is None:
            raise RecordError("bad-box", f"list item at {body[pos : pos + 40]!r} is not {listing_.item!r}", text)
        name = orjson.loads(match.group("label")) if listing_.json_labels else match.group("label")
        found = _boxes(match.group("items"), convention.spelling, decode)
        if listing_.per_box and out and out[-1].phrase == name:
            out[-1].boxes += found
        else:
            out.append(Decoded(name, found))
        pos = match.end()
        if pos < len(body) and listing_.joiner:
            if not body.startswith(listing_.joiner, pos):
                raise RecordError("bad-box", f"list items not joined by {listing_.joiner!r}", text)
            pos += len(listing_.joiner)
    return out
