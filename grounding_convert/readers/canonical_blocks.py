"""Canonical Parquet rows as :class:`SampleBlock` columns, read straight from the Arrow batch.

``--from canonical`` re-renders shards that ``--to canonical`` wrote; turning each row into a Python dict
and a :class:`Sample` cost more than rendering it.  Here one pass of Arrow and numpy over a record batch
finds the rows a block can vouch for (everything :meth:`SampleBlock` promises: a known size, a text,
grounded regions in text order without roles) and gathers their columns; every other row is read as
:meth:`CanonicalReader.read` reads it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import Sample
from .base import SampleBlock


def plain_rows(batch: pa.RecordBatch) -> np.ndarray:
    """Which rows a block can hold (bool per row): every value a sample needs is there and ordinary."""
    n = batch.num_rows
    image = batch.column("image")
    ids = batch.column("id")
    ok = _valid(ids) & (_filled(pc.binary_length(ids), 0) > 0) & _valid(batch.column("dataset")) & _valid(image)
    text = batch.column("text")
    ok &= _valid(text) & (_filled(pc.binary_length(text), 0) > 0)
    ok &= _valid(image.field("file"))
    for side in ("width", "height"):
        ok &= _filled(image.field(side), 0) > 0
    regions = _Regions(batch.column("regions"))
    bad = ~_valid(regions.items) | ~_valid(regions.items.field("phrase")) | _valid(regions.items.field("role"))
    grounded = regions.box_counts > 0
    spans = regions.items.field("span")
    span_ok = _valid(spans) & (_filled(pc.list_value_length(spans), 0) == 2)
    bad |= grounded & ~span_ok
    starts, ends = _span_ends(spans, span_ok)
    bad |= grounded & ~((starts >= 0) & (starts < ends))  # a null in a span reads as -1
    bad_boxes = ~regions.boxes_ok()
    bad |= bad_boxes
    # grounded regions in text order, none overlapping: what ordered_spans would keep, in this order
    order = np.flatnonzero(grounded & ~bad)
    same_row = regions.row[order][1:] == regions.row[order][:-1]
    overlap = same_row & (starts[order][1:] < ends[order][:-1])
    bad[order[1:][overlap]] = True
    ok &= np.bincount(regions.row[bad], minlength=n) == 0
    return ok


def block_of(batch: pa.RecordBatch, rows: list[int], split: str | None) -> SampleBlock:
    """The block of ``rows`` (plain, one split) of ``batch``; its sample ``i`` leaving the columnar path is
    built from the row as ``read`` builds it."""
    picked = batch.take(pa.array(rows, pa.int64()))
    image = picked.column("image")
    regions = _Regions(picked.column("regions"))
    grounded = np.flatnonzero(regions.box_counts > 0)
    items = regions.items.take(pa.array(grounded, pa.int64()))
    starts, ends = _span_ends(items.field("span"), np.ones(len(grounded), dtype=bool))
    box_counts = regions.box_counts[grounded]
    offsets = np.zeros(len(grounded) + 1, dtype=np.int32)
    np.cumsum(box_counts, out=offsets[1:])
    coords = pc.list_flatten(pc.list_flatten(items.field("boxes"))).to_numpy(zero_copy_only=False)
    return SampleBlock(
        split=split,
        ids=picked.column("id").to_pylist(),
        texts=picked.column("text").to_pylist(),
        files=image.field("file").to_pylist(),
        image_ids=image.field("id").to_pylist(),
        widths=image.field("width").to_numpy(zero_copy_only=False).astype(np.int64),
        heights=image.field("height").to_numpy(zero_copy_only=False).astype(np.int64),
        region_sample=regions.row[grounded],
        phrases=items.field("phrase").to_pylist(),
        starts=starts,
        ends=ends,
        region_boxes=offsets,
        boxes=np.asarray(coords, dtype=np.float64).reshape(-1, 4),
        notes={},
        make=lambda i: Sample.from_record(batch.slice(rows[i], 1).to_pylist()[0]),
        region_index=grounded - regions.first[regions.row[grounded]],
        region_counts=regions.counts,
    )


class _Regions:
    """A ``regions`` column flattened: one entry per region, its row, and each row's first region."""

    def __init__(self, column: pa.ListArray):
        lengths = _filled(pc.list_value_length(column), 0)  # a null list reads as no regions
        self.counts = lengths.astype(np.int64)
        self.first = np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)
        self.row = np.repeat(np.arange(len(column), dtype=np.int64), self.counts)
        self.items = pc.list_flatten(column)
        boxes = self.items.field("boxes")
        self.box_counts = _filled(pc.list_value_length(boxes), 0).astype(np.int64)  # null boxes: none
        self._boxes = boxes

    def boxes_ok(self) -> np.ndarray:
        """Per region: each of its boxes is four numbers (no null box, no null or missing corner)."""
        flat = pc.list_flatten(self._boxes)  # every box of every region, in order
        corners = _filled(pc.list_value_length(flat), -1)
        fine = _valid(flat) & (corners == 4)
        values = pc.list_flatten(flat)
        if values.null_count:  # a null corner: its box is not fine
            holes = np.repeat(np.arange(len(flat)), np.maximum(corners, 0))[~_valid(values)]
            fine[holes] = False
        owner = np.repeat(np.arange(len(self.box_counts), dtype=np.int64), self.box_counts)
        return np.bincount(owner[~fine], minlength=len(self.box_counts)) == 0


def _span_ends(spans: pa.ListArray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of each span that is two numbers (``usable``); -1 elsewhere."""
    starts = np.full(len(spans), -1, dtype=np.int64)
    ends = np.full(len(spans), -1, dtype=np.int64)
    if usable.any():
        pairs = pc.list_flatten(spans.filter(pa.array(usable)))
        values = _filled(pairs, -1).reshape(-1, 2)
        starts[usable], ends[usable] = values[:, 0], values[:, 1]
    return starts, ends


def _valid(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)


def _filled(array: pa.Array, value: int) -> np.ndarray:
    return np.asarray(pc.fill_null(array, value).to_numpy(zero_copy_only=False))
