"""KOSMOS-2 records (FORMATS.md "KOSMOS-2"): boxes as 32×32 patch-index tokens inside ``<object>`` tags.

Spellings, as checked against the model's public code and card:

* A box is ``<patch_index_UL><patch_index_LR>`` (4-digit, zero padded) — top-left and bottom-right cell of
  a 32×32 grid; the arithmetic lives in :mod:`grounding_convert.boxes` and equals transformers'
  ``models/kosmos2/processing_kosmos2.py`` (``coordinate_to_patch_index`` / ``patch_index_to_coordinate``).
* A grounded phrase is ``<phrase> text</phrase><object>…</object>``; several boxes for one phrase share one
  ``<object>`` joined by ``</delimiter_of_multi_objects/>``. The space before a phrase moves inside the tag,
  also at the very start of the text (``<grounding><phrase> a snowman</phrase>…``: the
  microsoft/kosmos-2-patch14-224 model card, "Phrase Grounding"), so ``<grounding>`` + tagged text cleans
  back to the caption exactly.
  Tokens are written without spaces between them, as the model generates them and as
  ``extract_entities_with_patch_indices`` (a port of unilm ``kosmos-2/demo/decode_string.py``) expects;
  (``Kosmos2Processor._insert_patch_index_tokens`` puts spaces between the tokens when it builds inputs
  from boxes; we write the spelling the model itself generates).
* REC ``<grounding><phrase> {phrase}</phrase>`` → ``<object>…</object>`` and REG
  ``<grounding><phrase> It</phrase><object>…</object> is`` → `` {phrase}``: the model card's "Referring
  Expression Comprehension" / "Referring expression generation" prompts. unilm
  ``kosmos-2/evaluation/refcoco/cook_data.py`` writes the same REC prompt for its fairseq pipeline without
  the space after ``<phrase>``; we follow the transformers card, which every HF fine-tune starts from.
  unilm has not released its REG evaluation code, so the card is the only reference for REG.

Record columns (after the common ones): ``prompt`` (what the model is given), ``completion`` (what it must
produce) and ``text`` = ``prompt + completion``, the full training string of a causal LM.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..boxes import PatchGrid, patch_indices_to_box
from ..errors import RecordError
from ..schema import Box, Sample
from .base import Decoded, RecordRandom, Writer, record_size
from .convention import Columns, Convention, Spelling, Tagging, tag_caption

GRID = 32
NUM_PATCHES = GRID * GRID
GROUNDING = "<grounding>"
PHRASE_OPEN, PHRASE_CLOSE = "<phrase>", "</phrase>"
OBJECT_OPEN, OBJECT_CLOSE = "<object>", "</object>"
DELIMITER = "</delimiter_of_multi_objects/>"

# One grounded entity, with the semantics of transformers' extract_entities_with_patch_indices: an optional
# <phrase>…</phrase> (no '<' inside) directly followed by an <object> of one or more index pairs.
_PAIR = r"<patch_index_\d+><patch_index_\d+>"
_ENTITY = re.compile(rf"(?:<phrase>([^<]+)</phrase>)?<object>((?:{_PAIR}{re.escape(DELIMITER)})*{_PAIR})</object>")
_INDEX = re.compile(r"<patch_index_(\d+)>")
_ANY_INDEX = re.compile(r"<patch_index_([^>]*)>")
_OBJECT_DEBRIS = (OBJECT_OPEN, OBJECT_CLOSE, "<patch_index_", DELIMITER)


KOSMOS_2 = Convention(
    # processing_kosmos2.py coordinate_to_patch_index: floor(x1 * 32) / ceil(x2 * 32 - 1), ul_y * 32 + ul_x
    grid=PatchGrid(GRID),
    # f"<patch_index_{str(idx).zfill(4)}>"; _insert_patch_index_tokens: " </delimiter_of_multi_objects/> ".join,
    # f"<object> {position_str} </object>", spaces dropped as the model generates them
    spelling=Spelling(
        box=("<patch_index_", 0, "><patch_index_", 1, ">"), pad=4, joiner=DELIMITER, group=(OBJECT_OPEN, OBJECT_CLOSE)
    ),
    # model card "Phrase Grounding": "<grounding> An image of<phrase> a snowman</phrase><object>…"
    tagging=Tagging(open=PHRASE_OPEN, close=PHRASE_CLOSE, space_inside=True, lead=" "),
    layout=Columns((("prompt", ("prompt",)), ("completion", ("answer",)), ("text", ("prompt", "answer")))),
    placeholders=(("rec", "phrase"), ("reg", "object")),
    answers=(("rec", "{boxes}"), ("reg", " {phrase}"), ("grounded-caption", "{caption}")),
    reserved=(
        GROUNDING,
        "</grounding>",
        PHRASE_OPEN,
        PHRASE_CLOSE,
        OBJECT_OPEN,
        OBJECT_CLOSE,
        "<patch_index_",
        DELIMITER,
    ),
    phrase_reserved=("<",),  # extract_entities_with_patch_indices reads a phrase as [^<]+
    normalize="strip",
)


def patch_token(index: int) -> str:
    """``<patch_index_NNNN>``, zero padded to 4 digits (``str(idx).zfill(4)`` in transformers)."""
    return f"<patch_index_{index:04d}>"


def object_tokens(boxes: Sequence[Box], width: float, height: float) -> str:
    """``<object>…</object>`` for one phrase's boxes (pixels), multi-box joined by the delimiter."""
    return Kosmos2Writer().spell_boxes(boxes, width, height)


def grounded_text(text: str, tagged: Sequence[tuple[tuple[int, int], str]]) -> str:
    """The caption with ``<phrase>…</phrase>`` + object string at each ``(span, objects)``, in text order."""
    return tag_caption(text, KOSMOS_2.tagging, tagged)


@dataclass(slots=True)
class Entity:
    """One ``[<phrase>…</phrase>]<object>…</object>`` match: the raw phrase (or None) and its index pairs."""

    phrase: str | None
    span: tuple[int, int]
    start: int
    pairs: list[tuple[int, int]]


def scan_entities(text: str) -> list[Entity]:
    """All grounded entities of a KOSMOS-2 string, one per ``<object>`` (no validation)."""
    out = []
    for match in _ENTITY.finditer(text):
        phrase = match.group(1)
        span = match.span(1) if phrase else (match.start(), match.start())
        pairs = []
        for pair in match.group(2).split(DELIMITER):
            a, b = _INDEX.findall(pair)
            pairs.append((int(a), int(b)))
        out.append(Entity(phrase if phrase else None, span, match.start(), pairs))
    return out


def extract_entities_with_patch_indices(
    text: str,
) -> list[tuple[str, tuple[int, int], list[tuple[int, int]]]]:
    """Same output as transformers' function of that name: ``(phrase, span, [(ul, lr), …])`` per entity.

    A phrase-less ``<object>`` yields one entity per box named ``<patch_index_{ul}><patch_index_{lr}>``
    (unpadded) with an empty span at the ``<object>`` tag, as transformers does.
    """
    out: list[tuple[str, tuple[int, int], list[tuple[int, int]]]] = []
    for entity in scan_entities(text):
        if entity.phrase is not None:
            out.append((entity.phrase, entity.span, list(entity.pairs)))
        else:
            out.extend((f"<patch_index_{a}><patch_index_{b}>", entity.span, [(a, b)]) for a, b in entity.pairs)
    return out


class Kosmos2Writer(Writer):
    """Microsoft KOSMOS-2 (unilm kosmos-2, transformers ``Kosmos2ForConditionalGeneration``)."""

    name = "kosmos-2"
    description = "KOSMOS-2: <phrase>…</phrase><object><patch_index_UL><patch_index_LR></object>, 32x32 grid"
    tasks = ("rec", "reg", "grounded-caption", "pointing")
    template_name = "kosmos-2"
    convention = KOSMOS_2

    def render_pointing(self, sample: Sample, rng: RecordRandom) -> dict[str, str]:
        """Question + the candidate boxes (answer among them, order drawn per record) → the answer box.

        KOSMOS-2 has no pointing prompt; candidates are bare ``<object>`` tags (no names, which would give
        the answer away), as in the card's "Grounded VQA with multimodal referring via bounding boxes".
        """
        answers = [r for r in sample.regions if r.role == "answer" and r.boxes]
        choices = [r for r in sample.regions if r.role == "choice" and r.boxes]
        candidates = [self.spell(sample, r.boxes) for r in answers + choices]
        rng.shuffle(candidates)
        question = self.check_markup(sample.text.strip(), sample, self._markup)
        prompt = self.prompt("pointing", rng, question=question, candidates=",".join(candidates))
        return {"prompt": prompt, "answer": "".join(self.spell(sample, r.boxes) for r in answers)}

    # --- reading back ------------------------------------------------------------------------------

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        """Entities of ``prompt + completion`` as pixel boxes of the record's image.

        Phrases are stripped of the space KOSMOS-2 keeps inside ``<phrase>``. For REG the decoded phrase is
        the completion (the prompt's phrase is the placeholder "It"); for pointing, objects in the prompt are
        ``choice`` and objects in the completion ``answer``.
        """
        width, height = record_size(record)
        prompt, completion = record.get("prompt"), record.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise RecordError("missing-key", "a KOSMOS-2 record needs string 'prompt' and 'completion'")
        text = prompt + completion
        if record.get("text") is not None and record["text"] != text:
            raise RecordError("bad-record", "'text' is not prompt + completion", raw=record.get("text"))
        _check_tokens(text)
        task = record.get("task")
        out = []
        for entity in scan_entities(text):
            in_prompt = entity.start < len(prompt)
            phrase = entity.phrase.strip() if entity.phrase is not None else None
            if task == "reg" and in_prompt:
                phrase = completion.strip()
            role = ("choice" if in_prompt else "answer") if task == "pointing" else None
            boxes = [_decode_pair(ul, lr, width, height) for ul, lr in entity.pairs]
            out.append(Decoded(phrase, boxes, role))
        return out


def _check_tokens(text: str) -> None:
    """Every patch token is 4 digits in 0..1023, and every object token belongs to a well-formed entity."""
    for token in _ANY_INDEX.finditer(text):
        digits = token.group(1)
        if not (len(digits) == 4 and digits.isascii() and digits.isdigit()):
            raise RecordError("bad-box", f"malformed patch token {token.group(0)!r}", raw=token.group(0))
        if int(digits) >= NUM_PATCHES:
            raise RecordError("bad-box", f"patch index {int(digits)} is outside 0..{NUM_PATCHES - 1}", token.group(0))
    residue = _ENTITY.sub("", text)
    for debris in _OBJECT_DEBRIS:
        at = residue.find(debris)
        if at >= 0:
            raise RecordError("bad-box", f"malformed <object> markup near {residue[max(0, at - 20) : at + 40]!r}", text)


def _decode_pair(ul: int, lr: int, width: float, height: float) -> Box:
    if ul % GRID > lr % GRID or ul // GRID > lr // GRID:
        raise RecordError("bad-box", f"patch pair ({ul}, {lr}) is not upper-left then lower-right", [ul, lr])
    return patch_indices_to_box(ul, lr, width, height, GRID)
