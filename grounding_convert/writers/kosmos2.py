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

import pyarrow as pa

from ..boxes import BoxError, box_to_patch_indices, patch_grid_step, patch_indices_to_box
from ..errors import RecordError, UsageError
from ..schema import Box, Region, Sample
from .base import Decoded, RecordRandom, Writer, ordered_spans, record_size

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
# Text that would be read back as KOSMOS-2 markup if it appeared in a caption or phrase.
_MARKUP = re.compile(r"</?(?:grounding|phrase|object)>|<patch_index_|</delimiter_of_multi_objects/>")
_OBJECT_DEBRIS = (OBJECT_OPEN, OBJECT_CLOSE, "<patch_index_", DELIMITER)


def patch_token(index: int) -> str:
    """``<patch_index_NNNN>``, zero padded to 4 digits (``str(idx).zfill(4)`` in transformers)."""
    return f"<patch_index_{index:04d}>"


def object_tokens(boxes: Sequence[Box], width: float, height: float) -> str:
    """``<object>…</object>`` for one phrase's boxes (pixels), multi-box joined by the delimiter."""
    pairs = []
    for box in boxes:
        try:
            ul, lr = box_to_patch_indices(box, width, height, GRID)
        except BoxError as exc:
            raise RecordError("empty-box", str(exc), raw=list(box)) from exc
        if ul % GRID > lr % GRID or ul // GRID > lr // GRID:
            # Only a box narrower than float precision at a cell edge gets here: it has no cells.
            raise RecordError("empty-box", f"box {list(box)} is too small for the {GRID}x{GRID} grid", raw=list(box))
        pairs.append(patch_token(ul) + patch_token(lr))
    if not pairs:
        raise RecordError("empty-box", "a grounded phrase has no boxes")
    return OBJECT_OPEN + DELIMITER.join(pairs) + OBJECT_CLOSE


def grounded_text(text: str, tagged: Sequence[tuple[tuple[int, int], str]]) -> str:
    """The caption with ``<phrase>…</phrase>`` + object string at each ``(span, objects)``, in text order.

    The text is prefixed with a space (``<grounding> An image of``) and the single space before each phrase
    moves inside its ``<phrase>`` tag, exactly as KOSMOS-2 generates grounded captions.
    """
    body = " " + text
    pieces: list[str] = []
    cursor = 0
    for (span_start, span_end), objects in tagged:
        if not (0 <= span_start < span_end <= len(text)):
            raise RecordError("bad-span", f"span {[span_start, span_end]} does not fit text of {len(text)} chars")
        start, end = span_start + 1, span_end + 1
        if start < cursor:
            raise RecordError("bad-span", f"span {[span_start, span_end]} overlaps the previous phrase")
        lead = start - 1 if body[start - 1] == " " and start - 1 >= cursor else start
        phrase = body[lead:end]
        if "<" in phrase:
            raise RecordError("render-failed", f"phrase {phrase.strip()!r} contains '<', which KOSMOS-2 cannot tag")
        pieces += [body[cursor:lead], PHRASE_OPEN, phrase, PHRASE_CLOSE, objects]
        cursor = end
    pieces.append(body[cursor:])
    return "".join(pieces)


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


def _check_plain(value: str, what: str) -> str:
    """Refuse text that would be read back as markup (a caption quoting ``<object>``, say)."""
    found = _MARKUP.search(value)
    if found:
        raise RecordError("render-failed", f"{what} contains KOSMOS-2 markup {found.group(0)!r}", raw=value)
    return value


class Kosmos2Writer(Writer):
    """Microsoft KOSMOS-2 (unilm kosmos-2, transformers ``Kosmos2ForConditionalGeneration``)."""

    name = "kosmos-2"
    description = "KOSMOS-2: <phrase>…</phrase><object><patch_index_UL><patch_index_LR></object>, 32x32 grid"
    tasks = ("rec", "reg", "grounded-caption", "pointing")
    template_name = "kosmos-2"

    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        return [("prompt", pa.string()), ("completion", pa.string()), ("text", pa.string())]

    # --- rendering ---------------------------------------------------------------------------------

    def render_rec(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        prompt = self._prompt("rec", rng, phrase=self._phrase(region))
        return self._record(prompt, self._objects(sample, region.boxes))

    def render_reg(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        prompt = self._prompt("reg", rng, object=self._objects(sample, region.boxes))
        return self._record(prompt, " " + self._phrase(region))

    def render_grounded_caption(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        text = _check_plain(sample.text, "text")
        tagged = [(region.span, self._objects(sample, region.boxes)) for region in ordered_spans(sample)]
        return self._record(self._prompt("grounded-caption", rng), grounded_text(text, tagged))

    def render_pointing(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        """Question + the candidate boxes (answer among them, order drawn per record) → the answer box.

        KOSMOS-2 has no pointing prompt; candidates are bare ``<object>`` tags (no names, which would give
        the answer away), as in the card's "Grounded VQA with multimodal referring via bounding boxes".
        """
        answers = [r for r in sample.regions if r.role == "answer" and r.boxes]
        choices = [r for r in sample.regions if r.role == "choice" and r.boxes]
        candidates = [self._objects(sample, r.boxes) for r in answers + choices]
        rng.shuffle(candidates)
        question = _check_plain(sample.text.strip(), "question")
        prompt = self._prompt("pointing", rng, question=question, candidates=",".join(candidates))
        return self._record(prompt, "".join(self._objects(sample, r.boxes) for r in answers))

    def _record(self, prompt: str, completion: str) -> dict[str, Any]:
        return {"prompt": prompt, "completion": completion, "text": prompt + completion}

    def _prompt(self, task: str, rng: RecordRandom, **fields: str) -> str:
        template = self.choose_template(task, rng)
        try:
            return template.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            source = self.templates.source if self.templates else self.name
            known = ", ".join("{" + k + "}" for k in fields) or "none"
            raise UsageError(
                f"{source}: {task} template {template!r} cannot be filled ({exc}); fields: {known}"
            ) from exc

    @staticmethod
    def _phrase(region: Region) -> str:
        phrase = region.phrase.strip()
        if not phrase:
            raise RecordError("bad-text", "the region has an empty phrase")
        if "<" in phrase:
            raise RecordError("render-failed", f"phrase {phrase!r} contains '<', which KOSMOS-2 cannot tag", phrase)
        return phrase

    @staticmethod
    def _objects(sample: Sample, boxes: Sequence[Box]) -> str:
        return object_tokens(boxes, sample.image.width, sample.image.height)

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

    def tolerance(self, width: int, height: int) -> tuple[float, float]:
        return patch_grid_step(width, height, GRID)


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
