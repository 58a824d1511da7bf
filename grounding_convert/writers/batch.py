"""Rendering many samples at once, column by column, for writers whose records are plain string templates.

The per-record path (:meth:`Writer.render`) builds a few Python dicts per record and pyarrow then takes
them apart again; at GRIT scale (six records per row) that is most of a run.  Here a writer's records for
a list of samples are built as Arrow columns: box coordinates are quantized in numpy with the same IEEE
operations, tokens and prompts are joined by Arrow string kernels, templates are drawn with the same
splitmix64 as :class:`~grounding_convert.writers.base.RecordRandom` (in wrapping uint64 arithmetic).

It is an accelerator, never a second definition: a writer offers it (``Writer.batch_ready``) only for
samples it can prove need nothing special (``Writer.batchable``); the result must equal the per-record
path byte for byte (``tests/writers/test_batch_render.py`` compares them on random samples,
``tests/engine/test_batch_path.py`` whole conversions); and a batch holding a sample the per-record path
would refuse (a box that quantizes to nothing, a non-finite box) is answered with those samples'
positions, so the pipeline renders them one by one and they get that path's reject and reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from string import Formatter
from typing import Any
from zlib import crc32

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import Sample
from .base import SUFFIX_MULTIPLIER, sample_state

_SENTINEL = "\x00\x01placeholder\x01\x00"


@dataclass
class RenderedBatch:
    """Records of consecutive samples in per-record order, and how many each sample got per task."""

    batch: pa.RecordBatch
    per_sample: list[dict[str, int]]
    boxes: np.ndarray  # every box of the samples (n × 4) and the sample it belongs to: the tally's box areas
    box_sample: np.ndarray


@dataclass
class FlatSamples:
    """The samples' grounded regions and boxes as flat arrays (region order = per-record order)."""

    samples: Sequence[Sample]
    states: np.ndarray  # uint64 per sample: sample_state(seed, id)
    widths: np.ndarray  # int64 per sample
    heights: np.ndarray
    region_sample: np.ndarray  # int64 per grounded region: which sample
    region_index: list[int]  # position of the region in sample.regions (the record id's number)
    phrases: list[str]
    region_boxes: np.ndarray  # int32 offsets into boxes, len(regions) + 1
    boxes: np.ndarray  # float64 (n, 4)
    box_sample: np.ndarray  # int64 per box: which sample
    region_of: list[dict[int, int]]  # per sample: id(region) → flat index

    @classmethod
    def collect(cls, samples: Sequence[Sample], seed: int) -> FlatSamples:
        """One Python pass over the samples: everything after it is array arithmetic."""
        widths, heights, states = [], [], []
        region_sample: list[int] = []
        region_index: list[int] = []
        phrases: list[str] = []
        counts: list[int] = []
        coords: list[float] = []
        region_of: list[dict[int, int]] = []
        # bound methods: this loop runs for every region of every sample
        add_sample, add_index, add_phrase, add_count = (
            region_sample.append,
            region_index.append,
            phrases.append,
            counts.append,
        )
        add_coords, add_where = coords.extend, region_of.append
        for s, sample in enumerate(samples):
            image = sample.image
            widths.append(image.width)
            heights.append(image.height)
            states.append(sample_state(seed, sample.id))
            where: dict[int, int] = {}
            for index, region in enumerate(sample.regions):
                boxes = region.boxes
                if boxes and region.role is None:
                    where[id(region)] = len(phrases)
                    add_sample(s)
                    add_index(index)
                    add_phrase(region.phrase)
                    add_count(len(boxes))
                    for box in boxes:
                        add_coords(box)
            add_where(where)
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        return cls(
            samples,
            np.array(states, dtype=np.uint64),
            np.array(widths, dtype=np.int64),
            np.array(heights, dtype=np.int64),
            np.array(region_sample, dtype=np.int64),
            region_index,
            phrases,
            offsets,
            np.array(coords, dtype=np.float64).reshape(-1, 4),
            np.repeat(np.array(region_sample, dtype=np.int64), counts),
            region_of,
        )


def quantized_or_refused(flat: FlatSamples, quantizer: Any, spelled: np.ndarray) -> np.ndarray | list[int]:
    """``Quantizer.encode_box`` of every box, or the positions of the samples the per-record path refuses.

    A spelled box (``spelled``: per region) is refused there when it is not finite, when ``v / size *
    scale`` overflows, or when it quantizes to an empty box; the caller renders those samples one by one
    so they get that path's reject and message.
    """
    assert quantizer.rounding == "floor", "only truncating quantizers have a columnar twin so far"
    box_sample = flat.box_sample
    finite = np.isfinite(flat.boxes).all(axis=1)
    boxes = np.where(finite[:, None], flat.boxes, 0.0)
    widths, heights = flat.widths[box_sample], flat.heights[box_sample]
    sizes = np.stack([widths, heights, widths, heights], axis=1).astype(np.float64)
    with np.errstate(over="ignore"):
        scaled = boxes / sizes * quantizer.scale
    q = np.clip(np.trunc(np.where(np.isfinite(scaled), scaled, 0.0)), 0, quantizer.max_index).astype(np.int64)
    bad = ~finite | ~np.isfinite(scaled).all(axis=1) | (q[:, 2] <= q[:, 0]) | (q[:, 3] <= q[:, 1])
    bad &= np.repeat(spelled, np.diff(flat.region_boxes))
    if bad.any():
        return sorted({int(s) for s in box_sample[bad]})
    return q


def first_draws(states: np.ndarray, suffix_crcs: np.ndarray, n: int) -> np.ndarray:
    """``record_rng(state, suffix).randrange(n)`` for many records: splitmix64 in wrapping uint64."""
    with np.errstate(over="ignore"):
        z = states ^ (suffix_crcs * np.uint64(SUFFIX_MULTIPLIER))
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n)).astype(np.int64)


_SUFFIX_CRCS: dict[str, np.ndarray] = {}


def suffix_crcs(task: str, indexes: Sequence[int] | None) -> np.ndarray:
    """CRC-32 of each record's id suffix (``rec/3``; just the task for one-per-sample tasks)."""
    if indexes is None:
        return np.array([crc32(task.encode())], dtype=np.uint64)
    table = _SUFFIX_CRCS.get(task)
    top = max(indexes, default=-1) + 1
    if table is None or len(table) < top:  # CRCs of "task/0" … "task/N" computed once and kept
        table = _SUFFIX_CRCS[task] = np.array(
            [crc32(f"{task}/{i}".encode()) for i in range(max(top, 64))], dtype=np.uint64
        )
    return table[np.asarray(indexes, dtype=np.int64)]


def split_template(template: str, placeholder: str | None) -> tuple[str, str] | None:
    """``template`` around its one plain ``{placeholder}`` after ``str.format`` (so ``{{`` is already ``{``).

    None when the template is anything else (two placeholders, a conversion like ``!r``, a format spec,
    another field, a syntax error): the writer then renders every record the per-record way.
    """
    try:
        fields = [
            (name, spec, conversion) for _, name, spec, conversion in Formatter().parse(template) if name is not None
        ]
    except ValueError:
        return None
    if fields != ([] if placeholder is None else [(placeholder, "", None)]):
        return None
    filled = template.format_map({placeholder: _SENTINEL} if placeholder else {})
    before, _, after = filled.partition(_SENTINEL) if placeholder else (filled, "", "")
    return before, after


def as_strings(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def per_region(values: pa.Array, flat: FlatSamples) -> pa.Array:
    """A per-box string array joined into one string per region (most regions have one box)."""
    if len(values) == len(flat.phrases):
        return values
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(flat.region_boxes), values), "")


def draw_pairs(pairs: list[tuple[str, str]], states: np.ndarray, crcs: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Each record's template, as the text before and after its placeholder."""
    chosen = pa.array(first_draws(states, crcs, len(pairs)))
    return pa.array([p[0] for p in pairs], pa.string()).take(chosen), pa.array([p[1] for p in pairs], pa.string()).take(
        chosen
    )


def two_turns(user: pa.Array, reply: pa.Array, turn_type: pa.StructType) -> pa.Array:
    """``[{speaker: user}, {speaker: reply}]`` per record, as a list<struct<speaker, text>> column."""
    total = len(user)
    values = pa.concat_arrays([user, reply]).take(
        pa.array(np.stack([np.arange(total), np.arange(total) + total], 1).reshape(-1))
    )
    speaker_field, text_field = list(turn_type)
    speakers = pa.array(["user", "assistant"], pa.string()).take(pa.array(np.tile([0, 1], total)))
    turns = pa.StructArray.from_arrays([speakers, values], fields=[speaker_field, text_field])
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * total + 1, 2, dtype=np.int32)), turns)


def join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and scalars."""
    return pc.binary_join_element_wise(*parts, "")


class Blocks:
    """Records of each task, in sample order per task; :meth:`assemble` puts them in per-record order."""

    def __init__(self, samples: Sequence[Sample]):
        self.samples = samples
        self.tasks: list[str] = []
        self.columns: list[dict[str, pa.Array]] = []
        self.counts: list[list[int]] = []

    def add(self, task: str, counts: list[int], columns: dict[str, pa.Array]) -> None:
        """``counts[s]`` records of sample ``s`` for ``task``; every column holds ``sum(counts)`` rows."""
        self.tasks.append(task)
        self.counts.append(counts)
        self.columns.append(columns)

    def assemble(self) -> tuple[dict[str, pa.Array], list[dict[str, int]]]:
        """Columns in per-record order (sample by sample, tasks in order) and each sample's counts."""
        n = len(self.samples)
        per_sample = [
            {task: counts[s] for task, counts in zip(self.tasks, self.counts, strict=True) if counts[s]}
            for s in range(n)
        ]
        if not self.columns:
            return {}, per_sample
        order = pa.array(interleave(np.array(self.counts, dtype=np.int64).reshape(len(self.counts), n)))
        names = list(self.columns[0])
        columns = {name: pa.concat_arrays([block[name] for block in self.columns]).take(order) for name in names}
        return columns, per_sample


def interleave(counts: np.ndarray) -> np.ndarray:
    """Row order that takes per-task blocks (concatenated, each in sample order) sample by sample.

    ``counts[t, s]`` is how many records task ``t`` has for sample ``s``.  Output segment (s, t) is the
    run of block ``t`` rows belonging to sample ``s``; each output row is its segment's source start plus
    its place in the segment.
    """
    tasks, samples = counts.shape
    sizes = counts.sum(axis=1)
    block_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # where each task's block begins
    within = np.cumsum(counts, axis=1) - counts  # where sample s begins inside block t
    source = (block_start[:, None] + within).T.reshape(-1)  # segments in output order: s-major, t-minor
    lengths = counts.T.reshape(-1)
    target = np.cumsum(lengths) - lengths  # where each segment begins in the output
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(source - target, lengths)
