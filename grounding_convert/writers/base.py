"""What every writer is (DESIGN §2): canonical sample + task → records, and records → boxes again.

The base class owns everything the models share: which regions a task uses, record ids, the seeded
template choice, the common columns (``id``, ``sample_id``, ``task``, ``image``, ``width``,
``height``), the size checks, and the per-record renderer of a :class:`~.convention.Convention` (the
reference the columnar path in :mod:`.batch` must equal).  A model module is its convention, its
``parse``, and hooks for what the convention cannot say (pointing).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar, Literal
from zlib import crc32

import orjson
import pyarrow as pa

from ..boxes import BoxError, is_empty, is_finite, union
from ..errors import RecordError
from ..readers.base import build_options
from ..schema import Box, Region, Sample
from ..templates import Templates
from .convention import NORMALIZERS, Columns, Convention, Conversation, Piece, compile_template, fill, tag_caption

TASKS = ("rec", "reg", "grounded-caption", "pointing")

COMMON_FIELDS = [
    ("id", pa.string()),
    ("sample_id", pa.string()),
    ("task", pa.string()),
    ("image", pa.string()),
    ("width", pa.int64()),
    ("height", pa.int64()),
]


@dataclass
class WriterOptions:
    """Options every writer understands; writers subclass this to add their own fields."""

    image_prefix: str | None = None  # absolute root or URL prefix written in front of image paths
    template_file: str | None = None  # a user's YAML replacing configs/templates/<writer>.yaml
    language: Literal["en", "zh", "mixed"] = "en"  # which template language(s) to draw from


@dataclass(frozen=True)
class ConversationLayout:
    """How a conversation writer spells turns: the role and text keys, and the image placeholder that starts
    the first user turn (``{image}`` = the record's image path; None when the trainer passes the image apart).
    Multi-turn packing (``output/packing.py``) keeps the placeholder in the first user turn only.
    Derived from the writer's :class:`~.convention.Conversation` layout."""

    role_key: str
    text_key: str
    image_head: str | None = None


@dataclass
class ConversationOptions(WriterOptions):
    """Options of writers whose records are conversations (they can be packed by a trainer layout)."""

    layout: Literal["native", "llamafactory", "ms-swift", "ms-swift-objects"] = "native"  # grounding_convert/layouts.py


@dataclass(slots=True)
class Decoded:
    """One grounding read back from a record: the phrase (if the record names it) and pixel boxes."""

    phrase: str | None
    boxes: list[Box] = field(default_factory=list)
    role: str | None = None


_MASK64 = (1 << 64) - 1


class RecordRandom:
    """The few random choices a record needs (template, candidate order), from a 64-bit state.

    Seeding a Mersenne Twister for every record costs more than rendering it; a splitmix64 stream
    seeded by (seed, record id) gives the same determinism at a fraction of the cost.
    """

    __slots__ = ("_state",)

    def __init__(self, state: int):
        self._state = state & _MASK64

    def _next(self) -> int:
        self._state = z = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def randrange(self, n: int) -> int:
        """An integer in ``[0, n)`` (bias below 2**-50 for the small n used here)."""
        if n <= 0:
            raise ValueError(f"empty range for randrange({n})")
        return self._next() % n

    def random(self) -> float:
        return (self._next() >> 11) * (1.0 / (1 << 53))

    def choice(self, items: Sequence[Any]) -> Any:
        return items[self.randrange(len(items))]

    def shuffle(self, items: list[Any]) -> None:
        """Fisher–Yates in place."""
        for i in range(len(items) - 1, 0, -1):
            j = self.randrange(i + 1)
            items[i], items[j] = items[j], items[i]


def pointing_candidates(sample: Sample) -> tuple[list[Region], Region]:
    """A pointing sample's candidates (region order) and its answer; each must hold exactly one box."""
    candidates = [r for r in sample.regions if r.role in ("choice", "answer")]
    for region in candidates:
        if len(region.boxes) != 1:
            raise RecordError(
                "render-failed",
                f"sample {sample.id}: pointing candidate {region.phrase!r} has {len(region.boxes)} boxes "
                "(expected exactly one)",
            )
    return candidates, next(r for r in candidates if r.role == "answer")


def sample_state(seed: int, sample_id: str) -> int:
    """64 bits of blake2b("{seed}\\0{sample id}"): the root of every random choice for one sample's records."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00{sample_id}".encode(), digest_size=8).digest(), "big")


def record_rng(state: int, suffix: str) -> RecordRandom:
    """The generator of record ``{sample id}/{suffix}``: depends only on (seed, record id), never on the worker.

    One blake2b per sample (:func:`sample_state`) and a CRC of the short suffix (``rec/2``) per record:
    hashing every whole record id cost more than choosing its template.
    """
    return RecordRandom(state ^ (crc32(suffix.encode()) * SUFFIX_MULTIPLIER))


SUFFIX_MULTIPLIER = 0x9E3779B97F4A7C15


class Writer(ABC):
    """Base of all model writers: a :class:`Convention` plus whatever it cannot say (hooks)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ("rec", "reg", "grounded-caption")
    formats: ClassVar[tuple[str, ...]] = ("parquet", "jsonl")
    Options: ClassVar[type[WriterOptions]] = WriterOptions
    #: template file stem under configs/templates (None: the writer uses no templates)
    template_name: ClassVar[str | None] = None
    #: the model's records as data (None: the writer renders everything itself, like ``canonical``)
    convention: Convention | None = None
    #: placeholders of the pointing prompt (its one hook-rendered task)
    pointing_placeholders: ClassVar[tuple[str, ...]] = ("question", "candidates")
    #: records are user/assistant conversations spelled this way (None: not a conversation writer)
    conversation: ClassVar[ConversationLayout | None] = None
    #: tasks run when none are asked for (None: all of ``tasks``)
    default_tasks: ClassVar[tuple[str, ...] | None] = None
    #: options ``grounding-convert demo`` runs the writer with (a writer that refuses to guess needs some)
    demo_options: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        layout = cls.convention.layout if cls.convention is not None else None
        if isinstance(layout, Conversation):
            cls.conversation = ConversationLayout(layout.keys[0], layout.keys[1], layout.head or None)

    def __init__(self, options: WriterOptions | None = None):
        self.options = options if options is not None else self.Options()
        self.templates = Templates.load(self.template_name, self.options.template_file) if self.template_name else None
        self._pools: dict[str, list[tuple[Piece, ...]]] = {}  # task → compiled phrasings, on first use
        self.convention = self.make_convention()
        if self.convention is not None:
            self._markup = self.convention.markup()
            self._phrase_markup = self.convention.phrase_markup()
            self._normalize = NORMALIZERS[self.convention.normalize]
            if self.convention.listing is not None:
                self._listing_item = self.convention.listing.compiled()

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Writer:
        """The writer for these options; a conversation writer with ``layout`` set comes packed by that layout."""
        options = build_options(cls.Options, values, owner=f"writer {cls.name!r}")
        if getattr(options, "layout", "native") != "native":
            from ..layouts import laid_out

            return laid_out(cls, options, tuple(values))  # type: ignore[return-value]
        return cls(options)

    def make_convention(self) -> Convention | None:
        """The convention these options select (a writer whose options change it overrides this)."""
        return type(self).convention

    # --- what subclasses provide ------------------------------------------------------------------

    def render_pointing(self, sample: Sample, rng: RecordRandom) -> dict[str, str]:
        """Values (``prompt``, ``answer``) of a pointing record: a hook, its rules differ per model."""
        raise NotImplementedError

    @abstractmethod
    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        """Invert the box spelling of one record (pixel boxes, using the record's width/height).

        Raises :class:`~grounding_convert.errors.RecordError` when a token is malformed or out of range.
        """

    def tolerance(self, width: int, height: int) -> tuple[float, float]:
        """Pixels of one quantization step along x and y: how far a decoded box may be off."""
        assert self.convention is not None
        return self.convention.grid.step(width, height)

    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        """The writer's own columns, after the common ones (from the convention's layout, then the grid's)."""
        assert self.convention is not None
        layout = self.convention.layout
        sized = [(name, pa.int64()) for name in self.convention.grid.columns]
        if isinstance(layout, Conversation):
            turn = pa.struct([(layout.keys[0], pa.string()), (layout.keys[1], pa.string())])
            return [("conversations", pa.list_(turn)), *sized]
        return [(name, pa.string()) for name, _ in layout.columns] + sized

    # --- conversations as (prompt, reply): what a trainer layout re-packs (layouts.py) ------------------

    def turns(self, record: dict[str, Any]) -> tuple[str, str]:
        """(user text without the layout's head, reply) of a conversation record."""
        layout = self.convention.layout if self.convention is not None else None
        if not isinstance(layout, Conversation):
            raise RecordError("bad-record", f"writer {self.name!r} writes no conversations")
        user, reply = conversation_turns(record, *layout.keys, roles=layout.roles)
        head = layout.head.replace("{image}", str(record.get("image")))
        if not user.startswith(head):
            raise RecordError("bad-record", f"record {record.get('id')!r}: user turn does not start with {head!r}")
        return user[len(head) :], reply

    def native(self, record: dict[str, Any], prompt: str, reply: str) -> dict[str, Any]:
        """The inverse of :meth:`turns`: this writer's record from the other columns, prompt and reply."""
        layout = self.convention.layout
        (role, text), (user, assistant) = layout.keys, layout.roles
        head = layout.head.replace("{image}", str(record.get("image")))
        turns = [{role: user, text: head + prompt}, {role: assistant, text: reply}]
        common = {name: record.get(name) for name, _ in COMMON_FIELDS}
        return {**common, "conversations": turns, **{k: v for k, v in record.items() if k not in common}}

    # --- the columnar path (writers/batch.py): same records, built as Arrow columns -----------------------

    def batch_ready(self, tasks: Sequence[str]) -> bool:
        """Whether :meth:`render_batch` can render these tasks (every phrasing has the plain shape)."""
        return self.convention is not None and batch.ready(self, tasks)

    def batchable(self, sample: Sample) -> bool:
        """Whether :meth:`render_batch` renders this sample exactly as :meth:`render_tasks` would."""
        return self.convention is not None and batch.batchable(self, sample)

    def render_batch(self, samples: Sequence[Sample], tasks: Sequence[str], seed: int) -> Any:
        """``batch.RenderedBatch`` of batchable samples, or the positions of those the per-record path refuses."""
        return batch.render(self, samples, tasks, seed)

    # a reader's SampleBlock straight to the columnar path (no Sample objects); a writer that re-packs the
    # records (layouts.LaidOut) or renders otherwise says no, and its blocks come as samples
    def block_ready(self, tasks: Sequence[str]) -> bool:
        return type(self).render_batch is Writer.render_batch and self.batch_ready(tasks)

    def block_batchable(self, block: Any) -> bool:
        """:meth:`batchable` for every sample of the block."""
        return batch.block_batchable(self, block)

    def render_block(self, block: Any, tasks: Sequence[str], seed: int) -> Any:
        """:meth:`render_batch` of the block's samples, from the block's columns."""
        return batch.render_flat(self, batch.FlatSamples.from_block(block, seed, "grounded-caption" in tasks), tasks)

    # --- shared machinery --------------------------------------------------------------------------

    def schema(self) -> pa.Schema:
        return pa.schema(COMMON_FIELDS + self.model_fields())

    def image_path(self, sample: Sample) -> str:
        return self.image_file_path(sample.image.file)

    def image_file_path(self, file: str) -> str:
        """The image path records carry: the dataset's file name under ``--image-prefix``, if any."""
        prefix = self.options.image_prefix
        if not prefix:
            return file
        return prefix.rstrip("/") + "/" + file.lstrip("/")

    def render(self, sample: Sample, task: str, seed: int) -> list[dict[str, Any]]:
        """All records of one task for one sample ([] when the task does not apply)."""
        return self.render_seeded(sample, task, sample_state(seed, sample.id))

    def render_tasks(self, sample: Sample, tasks: Sequence[str], seed: int) -> list[tuple[str, list[dict[str, Any]]]]:
        """Every task's records for one sample, in task order (the first RecordError stops them all)."""
        state = sample_state(seed, sample.id)
        return [(task, self.render_seeded(sample, task, state)) for task in tasks]

    def render_seeded(self, sample: Sample, task: str, state: int) -> list[dict[str, Any]]:
        """:meth:`render` with the sample's random state (:func:`sample_state`) already computed."""
        if task in ("rec", "reg"):
            regions = grounded_regions(sample)
            if not regions:
                return []
            sized = self._check_size(sample)
            out = []
            for index, region in regions:
                suffix = f"{task}/{index}"
                values = self.region_values(task, sample, region, record_rng(state, suffix))
                out.append(self.record(sample, task, f"{sample.id}/{suffix}", values, sized))
            return out
        if task == "grounded-caption":
            if not any(r.role is None and r.span is not None and r.boxes for r in sample.regions):
                return []
            sized = self._check_size(sample)
            values = self.caption_values(sample, record_rng(state, task))
            return [self.record(sample, task, f"{sample.id}/{task}", values, sized)]
        if task == "detection":  # every grounded region under its category (or phrase), as the listing spells it
            regions = grounded_regions(sample)
            if not regions:
                return []
            sized = self._check_size(sample)
            values = self.detection_values(sample, [r for _, r in regions], record_rng(state, task))
            return [self.record(sample, task, f"{sample.id}/{task}", values, sized)]
        if task == "pointing":
            if not any(r.role == "answer" and r.boxes for r in sample.regions):
                return []
            sized = self._check_size(sample)
            values = self.render_pointing(sample, record_rng(state, task))
            return [self.record(sample, task, f"{sample.id}/{task}", values, sized)]
        raise ValueError(f"unknown task {task!r}")

    # --- the per-record renderer of a convention (the reference the columnar path must equal) ------------

    def region_values(self, task: str, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, str]:
        """REC (phrase → boxes) or REG (boxes → phrase) of one region."""
        phrase = self.model_phrase(region.phrase, sample)
        boxes = self.spell(sample, region.boxes)
        slot = {"rec": phrase, "reg": boxes}[task]
        prompt = self.prompt(task, rng, **{self.prompt_names(task)[0]: slot})
        fields = {"phrase": phrase, "boxes": boxes}
        if self.convention.listing is not None:
            fields["objects"] = self.objects(sample, [(phrase, region.boxes)])
        values = {"prompt": prompt, "answer": fill(self._answer(task), fields)}
        values["text"] = region.phrase
        if self.uses("region_coord"):
            values["region_coord"] = region_coord(region.boxes)
        return values

    def caption_values(self, sample: Sample, rng: RecordRandom) -> dict[str, str]:
        """The caption with each grounded phrase tagged and followed by its boxes."""
        convention = self.convention
        text = sample.text
        if convention.writes_caption():  # else only the grounded phrases are written (and checked below)
            text = self.check_markup(text, sample, self._markup)
        tagged, labelled = [], []
        for region in ordered_spans(sample):
            start, end = region.span
            if not (0 <= start < end <= len(text)):
                raise RecordError("bad-span", f"span {[start, end]} does not fit text of {len(text)} chars")
            self.check_markup(text[start:end], sample, self._phrase_markup)
            tagged.append((region.span, self.spell(sample, region.boxes)))
            labelled.append((text[start:end], region.boxes))
        caption = tag_caption(text, convention.tagging, tagged)
        if convention.normalize_caption:
            caption = self._normalize(caption)
        fields = {"caption": caption}
        slot = {}
        if convention.listing is not None:
            fields["objects"] = self.objects(sample, labelled)
            phrases = convention.listing.joiner.join(dict.fromkeys(label for label, _ in labelled))
            slot = {"caption": text, "phrases": phrases}
        elif convention.placeholder("grounded-caption") == "caption":
            slot = {"caption": text}
        name = convention.placeholder("grounded-caption")
        prompt = self.prompt("grounded-caption", rng, **({name: slot[name]} if name else {}))
        return {"prompt": prompt, "answer": fill(self._answer("grounded-caption"), fields), "text": text}

    def detection_values(self, sample: Sample, regions: Sequence[Region], rng: RecordRandom) -> dict[str, str]:
        """The detection prompt (``{phrases}``: the distinct labels) and the ``{objects}`` of every region."""
        convention = self.convention
        labelled = [(self.model_phrase(r.category or r.phrase, sample), r.boxes) for r in regions]
        name = convention.placeholder("detection")
        phrases = convention.listing.joiner.join(dict.fromkeys(label for label, _ in labelled))
        prompt = self.prompt("detection", rng, **({name: phrases} if name else {}))
        answer = fill(self._answer("detection"), {"objects": self.objects(sample, labelled)})
        return {"prompt": prompt, "answer": answer, "text": ""}

    def objects(self, sample: Sample, labelled: Sequence[tuple[str, Sequence[Box]]]) -> str:
        """``{objects}``: each (label, boxes) as the convention's :class:`~.convention.Listing` item."""
        listing = self.convention.listing
        item = self._listing_item
        items = []
        for label, boxes in labelled:
            if listing.json_labels:
                label = orjson.dumps(label).decode()
            for group in [[b] for b in boxes] if listing.per_box else [boxes]:
                items.append(fill(item, {"label": label, "boxes": self.spell(sample, group)}))
        return listing.group[0] + listing.joiner.join(items) + listing.group[1]

    def common_values(self, sample: Sample, task: str, record_id: str) -> dict[str, Any]:
        """The :data:`COMMON_FIELDS` of a record: every writer's and layout's records start with them."""
        return {
            "id": record_id,
            "sample_id": sample.id,
            "task": task,
            "image": self.image_path(sample),
            "width": sample.image.width,
            "height": sample.image.height,
        }

    def record(
        self, sample: Sample, task: str, record_id: str, values: dict[str, str], sized: tuple[tuple[str, int], ...] = ()
    ) -> dict[str, Any]:
        """The record of ``values`` in the convention's layout, after the common columns (then ``sized``: the
        grid's own size columns)."""
        record = self.common_values(sample, task, record_id)
        layout = self.convention.layout
        if isinstance(layout, Conversation):
            head = layout.head
            if "{image}" in head:
                head = head.replace("{image}", self.checked_image(record["image"], sample))
            (role, text), (user, assistant) = layout.keys, layout.roles
            record["conversations"] = [
                {role: user, text: head + values["prompt"]},
                {role: assistant, text: values["answer"]},
            ]
            record.update(sized)
            return record
        values = {**values, "id": record_id}
        if self.uses("image_id"):
            values["image_id"] = image_id(sample)
        for name, parts in layout.columns:
            record[name] = "".join(values.get(part, "") for part in parts)
        record.update(sized)
        return record

    def spell(self, sample: Sample, boxes: Sequence[Box]) -> str:
        """One phrase's boxes in the model's spelling, refusing what it cannot spell."""
        return self.spell_boxes(boxes, sample.image.width, sample.image.height)

    def spell_boxes(self, boxes: Sequence[Box], w: int, h: int) -> str:
        """:meth:`spell` for an image of ``w × h`` pixels."""
        convention = self.convention
        if not boxes:
            raise RecordError("empty-box", "a grounded phrase has no boxes")
        if convention.union_boxes:
            boxes = [union(boxes)] if all(is_finite(b) for b in boxes) else boxes
        grid, spelling = convention.grid, convention.spelling
        spelled = []
        for box in boxes:
            if not is_finite(box):
                raise RecordError("bad-box", f"box {list(box)!r} is not four finite numbers", box)
            if is_empty(box):
                raise RecordError("empty-box", f"box {list(box)} has no area (x2 <= x1 or y2 <= y1)", list(box))
            try:
                q = grid.encode_box(box, w, h)
            except OverflowError:
                raise RecordError("bad-box", f"box {list(box)} is too large for a {w}x{h} image", list(box)) from None
            except BoxError as exc:  # narrower than float precision once normalized
                raise RecordError("empty-box", str(exc), list(box)) from None
            if grid.is_collapsed(q):  # FORMATS.md: never turn a valid box into an empty one without counting it
                raise RecordError("empty-box", f"box {list(box)} collapses to {q} on the {self.name} grid", list(box))
            spelled.append(spelling.one(q))
        return spelling.group_of(spelled)

    def model_phrase(self, phrase: str, sample: Sample) -> str:
        """A region's phrase as the model sees it: markup refused, normalized, not empty."""
        out = self._normalize(self.check_markup(phrase, sample, self._phrase_markup))
        if self.convention.require_text and not out:
            empty = f"sample {sample.id}: text {phrase!r} is empty after {self.convention.normalize}"
            raise RecordError("bad-text", empty)
        return out

    def check_markup(self, text: str, sample: Sample, pattern: re.Pattern[str] | None) -> str:
        """``text``, unless it holds the model's markup (it would be read back as boxes or tags)."""
        found = pattern.search(text) if pattern is not None else None
        if found is not None:
            raise RecordError(
                "render-failed", f"sample {sample.id}: text {text!r} contains {self.name} markup {found.group(0)!r}"
            )
        if self.convention.require_text and not text:
            raise RecordError("bad-text", f"sample {sample.id}: empty text")
        return text

    def checked_image(self, path: str, sample: Sample) -> str:
        limit = self.convention.max_image_bytes
        if limit is not None and len(path.encode("utf-8")) > limit:
            size = len(path.encode("utf-8"))
            raise RecordError("render-failed", f"image path is {size} bytes; {self.name}'s tokenizer allows {limit}")
        return self.check_markup(path, sample, self._markup)

    def prompt(self, task: str, rng: RecordRandom, **values: str) -> str:
        pool = self.template_pool(task)
        return fill(pool[rng.randrange(len(pool))], values)

    def prompt_names(self, task: str) -> tuple[str, ...]:
        """The placeholders a ``task`` prompt may use."""
        if task == "pointing":
            return self.pointing_placeholders
        name = self.convention.placeholder(task)
        return (name,) if name else ()

    def template_pool(self, task: str) -> list[tuple[Piece, ...]]:
        """The phrasings of ``task`` in the writer's language, compiled (looked up once, then kept)."""
        pool = self._pools.get(task)
        if pool is None:
            assert self.templates is not None, f"writer {self.name} has no templates"
            names = self.prompt_names(task)
            phrasings = self.templates.pool(task, self.options.language)
            pool = [compile_template(t, names, self.templates.source, task) for t in phrasings]
            self._pools[task] = pool
        return pool

    def _answer(self, task: str) -> tuple[Piece, ...]:
        return self.convention.answer(task)

    def uses(self, value: str) -> bool:
        layout = self.convention.layout
        return isinstance(layout, Columns) and any(value in parts for _, parts in layout.columns)

    def _check_size(self, sample: Sample) -> tuple[tuple[str, int], ...]:
        """Refuse an image without a usable size; the grid's size columns of a usable one."""
        w, h = sample.image.width, sample.image.height
        if not w or not h or w <= 0 or h <= 0:
            raise RecordError("bad-size", f"image {sample.image.file!r} has no usable size ({w}x{h})")
        if self.convention is None:
            return ()
        try:
            return self.convention.grid.size_columns(w, h)
        except BoxError as exc:
            raise RecordError("bad-size", f"sample {sample.id}: {exc}") from None


def image_id(sample: Sample) -> str:
    """The image's id, or its file name without extension."""
    return image_id_of(sample.image.id, sample.image.file)


def image_id_of(given: str | None, file: str) -> str:
    """:func:`image_id` from the image's id and file (a reader's block holds them as columns)."""
    return given or PurePosixPath(file).stem


def region_coord(boxes: Sequence[Box]) -> str:
    """One ``x1,y1,x2,y2`` box in original pixels, two decimals (several boxes → their union): the
    ``region_coord`` of OFA's RefCOCO rows (OFA README.md L389 ``230.79,121.75,423.66,463.06``)."""
    return ",".join(f"{v:.2f}" for v in union(boxes))


def record_size(record: dict[str, Any]) -> tuple[int, int]:
    """The image size a record was written for (every writer's ``parse`` decodes with it)."""
    width, height = record.get("width"), record.get("height")
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height))
    if not ok:
        raise RecordError("bad-size", f"record {record.get('id')!r} has no usable size ({width}x{height})")
    return width, height


def conversation_turns(
    record: dict[str, Any], role_key: str, text_key: str, roles: tuple[str, str] = ("user", "assistant")
) -> tuple[str, str]:
    """(user, assistant) texts of a two-turn ``conversations`` record (``roles`` as the layout names them)."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or len(turns) != 2:
        raise RecordError("missing-key", f"record {record.get('id')!r} needs a two-turn 'conversations' list")
    texts = []
    for turn, role in zip(turns, roles, strict=True):
        if not isinstance(turn, dict) or turn.get(role_key) != role or not isinstance(turn.get(text_key), str):
            raise RecordError("wrong-type", f"record {record.get('id')!r}: expected a {role!r} turn, got {turn!r}")
        texts.append(turn[text_key])
    return texts[0], texts[1]


def grounded_regions(sample: Sample) -> list[tuple[int, Region]]:
    """The regions REC/REG records are made from: plain (non-QA) regions with at least one box."""
    return [(i, r) for i, r in enumerate(sample.regions) if r.role is None and r.boxes]


def ordered_spans(sample: Sample) -> list[Region]:
    """Regions with a span and boxes, in text order, with overlapping spans dropped (first wins).

    Grounded captions insert tags at span ends; overlapping spans cannot both be tagged in place.
    """
    candidates = [r for r in sample.regions if r.role is None and r.span is not None and r.boxes]
    if len(candidates) > 1:
        candidates.sort(key=_text_order)
    chosen: list[Region] = []
    end = -1
    for region in candidates:
        if region.span[0] >= end:
            chosen.append(region)
            end = region.span[1]
    return chosen


def _text_order(region: Region) -> tuple[int, int]:
    """Earlier start first; of two starting together, the longer (it is tagged, the inner one dropped)."""
    return region.span[0], -region.span[1]


def check_tasks(writer: type[Writer], tasks: Sequence[str]) -> None:
    from ..errors import UsageError

    for task in tasks:
        if task not in TASKS and task not in writer.tasks:
            raise UsageError(f"unknown task {task!r} (tasks: {', '.join(TASKS)})")
        if task not in writer.tasks:
            raise UsageError(f"writer {writer.name!r} has no task {task!r} (it has: {', '.join(writer.tasks)})")


from . import batch  # noqa: E402 - the columnar renderer builds on the names above
