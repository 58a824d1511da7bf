"""What every writer is (DESIGN §2): canonical sample + task → records, and records → boxes again.

The base class owns everything the models share: which regions a task uses, record ids, the seeded
template choice, the common columns (``id``, ``sample_id``, ``task``, ``image``, ``width``,
``height``) and the size checks.  A subclass only spells prompts and boxes (``render_*``) and reads
them back (``parse``), with the arithmetic delegated to :mod:`grounding_convert.boxes`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from zlib import crc32

import pyarrow as pa

from ..errors import RecordError
from ..readers.base import build_options
from ..schema import Box, Region, Sample
from ..templates import Templates

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
    Multi-turn packing (``output/packing.py``) keeps the placeholder in the first user turn only."""

    role_key: str
    text_key: str
    image_head: str | None = None


@dataclass
class ConversationOptions(WriterOptions):
    """Options of writers whose records are conversations (they can be packed by a trainer layout)."""

    layout: Literal["native", "llamafactory", "ms-swift"] = "native"  # grounding_convert/layouts.py


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


def sample_state(seed: int, sample_id: str) -> int:
    """64 bits of blake2b("{seed}\\0{sample id}"): the root of every random choice for one sample's records."""
    prefix = f"{seed}\x00"
    hasher = _SEEDED.get(prefix)
    if hasher is None:
        if len(_SEEDED) > 64:
            _SEEDED.clear()
        hasher = _SEEDED[prefix] = hashlib.blake2b(prefix.encode(), digest_size=8)
    hasher = hasher.copy()  # the seed's prefix is hashed once, not per sample
    hasher.update(sample_id.encode())
    return int.from_bytes(hasher.digest(), "big")


def record_rng(state: int, suffix: str) -> RecordRandom:
    """The generator of record ``{sample id}/{suffix}``: depends only on (seed, record id), never on the worker.

    One blake2b per sample (:func:`sample_state`) and a CRC of the short suffix (``rec/2``) per record:
    hashing every whole record id cost more than choosing its template.
    """
    return RecordRandom(state ^ (crc32(suffix.encode()) * SUFFIX_MULTIPLIER))


SUFFIX_MULTIPLIER = 0x9E3779B97F4A7C15
_SEEDED: dict[str, Any] = {}


class Writer(ABC):
    """Base of all model writers."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ("rec", "reg", "grounded-caption")
    formats: ClassVar[tuple[str, ...]] = ("parquet", "jsonl")
    Options: ClassVar[type[WriterOptions]] = WriterOptions
    #: template file stem under configs/templates (None: the writer uses no templates)
    template_name: ClassVar[str | None] = None
    #: records are user/assistant conversations spelled this way (None: not a conversation writer)
    conversation: ClassVar[ConversationLayout | None] = None
    #: per-sample memo while :meth:`render_tasks` runs (None otherwise)
    _memo: dict[Any, Any] | None = None

    def __init__(self, options: WriterOptions | None = None):
        self.options = options if options is not None else self.Options()
        self.templates = Templates.load(self.template_name, self.options.template_file) if self.template_name else None
        self._pools: dict[str, list[str]] = {}  # task → phrasings in the chosen language, on first use

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Writer:
        """The writer for these options; a conversation writer with ``layout`` set comes packed by that layout."""
        writer = cls(build_options(cls.Options, values, owner=f"writer {cls.name!r}"))
        layout = getattr(writer.options, "layout", "native")
        if layout != "native":
            from ..layouts import laid_out

            return laid_out(writer, layout)  # type: ignore[return-value]
        return writer

    # --- what subclasses provide ------------------------------------------------------------------

    @abstractmethod
    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        """The writer's own columns, after the common ones."""

    def render_rec(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        raise NotImplementedError

    def render_reg(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        raise NotImplementedError

    def render_grounded_caption(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        raise NotImplementedError

    def render_pointing(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        raise NotImplementedError

    @abstractmethod
    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        """Invert the box spelling of one record (pixel boxes, using the record's width/height).

        Raises :class:`~grounding_convert.errors.RecordError` when a token is malformed or out of range.
        """

    @abstractmethod
    def tolerance(self, width: int, height: int) -> tuple[float, float]:
        """Pixels of one quantization step along x and y: how far a decoded box may be off."""

    # --- optional columnar path (writers/batch.py): same records, built as Arrow columns ----------------

    def batch_ready(self, tasks: Sequence[str]) -> bool:
        """Whether :meth:`render_batch` can render these tasks (a writer without a columnar path: never)."""
        return False

    def batchable(self, sample: Sample) -> bool:
        """Whether :meth:`render_batch` renders this sample exactly as :meth:`render_tasks` would."""
        return False

    def render_batch(self, samples: Sequence[Sample], tasks: Sequence[str], seed: int) -> Any:
        """``batch.RenderedBatch`` of batchable samples, or the positions of those the per-record path refuses."""
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------------------------

    def schema(self) -> pa.Schema:
        return pa.schema(COMMON_FIELDS + self.model_fields())

    def image_path(self, sample: Sample) -> str:
        prefix = self.options.image_prefix
        if not prefix:
            return sample.image.file
        return prefix.rstrip("/") + "/" + sample.image.file.lstrip("/")

    def render(self, sample: Sample, task: str, seed: int) -> list[dict[str, Any]]:
        """All records of one task for one sample ([] when the task does not apply)."""
        return self.render_seeded(sample, task, sample_state(seed, sample.id))

    def render_tasks(self, sample: Sample, tasks: Sequence[str], seed: int) -> list[tuple[str, list[dict[str, Any]]]]:
        """Every task's records for one sample, in task order (the first RecordError stops them all).

        The sample cannot change while its tasks render, so a writer may keep per-sample work (a region's
        box tokens) in ``self._memo`` meanwhile; the memo lives for this call only.
        """
        self._memo = {}
        try:
            state = sample_state(seed, sample.id)
            return [(task, self.render_seeded(sample, task, state)) for task in tasks]
        finally:
            self._memo = None

    def render_seeded(self, sample: Sample, task: str, state: int) -> list[dict[str, Any]]:
        """:meth:`render` with the sample's random state (:func:`sample_state`) already computed."""
        if task in ("rec", "reg"):
            method = self.render_rec if task == "rec" else self.render_reg
            regions = grounded_regions(sample)
            if not regions:
                return []
            self._check_size(sample)
            out = []
            prefix = f"{sample.id}/"
            common = self._common(sample, task, prefix)  # once per sample; "id" stays the first key
            for index, region in regions:
                suffix = f"{task}/{index}"
                record = common.copy()
                record["id"] = prefix + suffix
                record.update(method(sample, region, record_rng(state, suffix)))
                out.append(record)
            return out
        if task == "grounded-caption":
            for r in sample.regions:
                if r.role is None and r.span is not None and r.boxes:
                    break
            else:
                return []
            self._check_size(sample)
            record = self._common(sample, task, f"{sample.id}/{task}")
            record.update(self.render_grounded_caption(sample, record_rng(state, task)))
            return [record]
        if task == "pointing":
            if not any(r.role == "answer" and r.boxes for r in sample.regions):
                return []
            self._check_size(sample)
            record = self._common(sample, task, f"{sample.id}/{task}")
            record.update(self.render_pointing(sample, record_rng(state, task)))
            return [record]
        raise ValueError(f"unknown task {task!r}")

    def choose_template(self, task: str, rng: RecordRandom) -> str:
        pool = self.template_pool(task)
        return pool[rng.randrange(len(pool))]

    def template_pool(self, task: str) -> list[str]:
        """The phrasings of ``task`` in the writer's language (looked up once, then kept)."""
        pool = self._pools.get(task)
        if pool is None:
            assert self.templates is not None, f"writer {self.name} has no templates"
            pool = self._pools[task] = self.templates.pool(task, self.options.language)
        return pool

    def _common(self, sample: Sample, task: str, record_id: str) -> dict[str, Any]:
        return {
            "id": record_id,
            "sample_id": sample.id,
            "task": task,
            "image": self.image_path(sample),
            "width": sample.image.width,
            "height": sample.image.height,
        }

    @staticmethod
    def _check_size(sample: Sample) -> None:
        w, h = sample.image.width, sample.image.height
        if not w or not h or w <= 0 or h <= 0:
            raise RecordError("bad-size", f"image {sample.image.file!r} has no usable size ({w}x{h})")


def record_size(record: dict[str, Any]) -> tuple[int, int]:
    """The image size a record was written for (every writer's ``parse`` decodes with it)."""
    width, height = record.get("width"), record.get("height")
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height))
    if not ok:
        raise RecordError("bad-size", f"record {record.get('id')!r} has no usable size ({width}x{height})")
    return width, height


def conversation_turns(record: dict[str, Any], role_key: str, text_key: str) -> tuple[str, str]:
    """(user, assistant) texts of a two-turn ``conversations`` record (Qwen-VL and CogVLM layouts)."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or len(turns) != 2:
        raise RecordError("missing-key", f"record {record.get('id')!r} needs a two-turn 'conversations' list")
    texts = []
    for turn, role in zip(turns, ("user", "assistant"), strict=True):
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
