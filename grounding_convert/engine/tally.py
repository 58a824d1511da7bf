"""Counting: every input record is accounted for (read = written + rejected + filtered), per split, with
reasons, plus the small distributions the dataset card shows.  Tallies are plain dicts of ints so that
they travel between processes, live in commit markers, and merge in any order to the same totals.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schema import Sample

WORD_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55)
AREA_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
REGION_BUCKETS = (0, 1, 2, 3, 5, 8, 13)


def bucket(value: float, edges: tuple[float, ...]) -> str:
    """Label of the first bucket whose upper edge holds ``value`` ("≤edge"), or ">last" (also for NaN)."""
    labels = _LABELS.get(edges)
    if labels is None:
        labels = _LABELS[edges] = (*(f"<={edge:g}" for edge in edges), f">{edges[-1]:g}")
    if value != value:  # NaN: no edge holds it
        return labels[-1]
    return labels[bisect_left(edges, value)]  # called for every sample and box: labels are precomputed


_LABELS: dict[tuple[float, ...], tuple[str, ...]] = {}


def _labels(edges: tuple[float, ...]) -> tuple[str, ...]:
    bucket(0, edges)
    return _LABELS[edges]


_WORD_LABELS, _REGION_LABELS, _AREA_LABELS = _labels(WORD_BUCKETS), _labels(REGION_BUCKETS), _labels(AREA_BUCKETS)

UNSPLIT_KEY = "(unsplit)"


def _add_buckets(counter: Counter, values: np.ndarray, edges: tuple[float, ...], labels: tuple[str, ...]) -> None:
    """Count ``values`` into ``counter`` by bucket label, NaN under the last (as :func:`bucket` does)."""
    index = np.searchsorted(np.array(edges, dtype=np.float64), values, side="left")
    index[np.isnan(values)] = len(edges)
    for position, count in enumerate(np.bincount(index, minlength=len(labels)).tolist()):
        if count:
            counter[labels[position]] += count


def split_key(split: str | None) -> str:
    return split or UNSPLIT_KEY


def histogram_columns(samples: list[Sample]) -> tuple[list[str], list[int], list[int]]:
    """What :meth:`Tally.count_written_columns` reads of each sample: its text, number of regions, image area."""
    return (
        [s.text for s in samples],
        [len(s.regions) for s in samples],
        [(s.image.width or 0) * (s.image.height or 0) for s in samples],
    )


@dataclass
class Tally:
    read: int = 0
    written: int = 0
    rejected: int = 0
    filtered: int = 0
    # split → {"read", "written", "rejected", "filtered"}; unsplit datasets (and rejects a reader cannot
    # place) count under "(unsplit)"
    splits: dict[str, Counter] = field(default_factory=dict)
    # split → task → records written
    records: dict[str, Counter] = field(default_factory=dict)
    reject_reasons: Counter = field(default_factory=Counter)
    filter_reasons: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    text_words: Counter = field(default_factory=Counter)
    box_area: Counter = field(default_factory=Counter)
    regions_per_sample: Counter = field(default_factory=Counter)
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _split(self, split: str | None) -> Counter:
        key = split or UNSPLIT_KEY
        counter = self.splits.get(key)
        if counter is None:
            counter = self.splits[key] = Counter()
        return counter

    def count_read(self, split: str | None) -> None:
        self.read += 1
        self._split(split)["read"] += 1

    def count_written(self, sample: Sample, per_task: dict[str, int]) -> None:
        self.written += 1
        key = sample.split or UNSPLIT_KEY
        split = self.splits.get(key)
        if split is None:
            split = self.splits[key] = Counter()
        split["written"] += 1
        tasks = self.records.get(key)
        if tasks is None:
            tasks = self.records[key] = Counter()
        for task, n in per_task.items():
            tasks[task] += n
        # bucket() inlined (runs for every sample and box): counts are ints, only box areas can be NaN
        self.text_words[_WORD_LABELS[bisect_left(WORD_BUCKETS, len(sample.text.split()))]] += 1
        regions = sample.regions
        self.regions_per_sample[_REGION_LABELS[bisect_left(REGION_BUCKETS, len(regions))]] += 1
        w, h = sample.image.width or 0, sample.image.height or 0
        if w > 0 and h > 0:
            area, box_area, labels, nan = w * h, self.box_area, _AREA_LABELS, _AREA_LABELS[-1]
            for region in regions:
                for x1, y1, x2, y2 in region.boxes:
                    value = (x2 - x1) * (y2 - y1) / area
                    box_area[labels[bisect_left(AREA_BUCKETS, value)] if value == value else nan] += 1

    def count_written_columns(
        self,
        split_name: str | None,
        texts: list[str],
        region_counts: Any,
        sizes: Any,
        task_names: list[str],
        counts: np.ndarray,
        boxes: np.ndarray,
        box_sample: np.ndarray,
    ) -> None:
        """:meth:`count_written` for every sample with records (all of one split), from columns: each sample's
        text, number of regions and image area (:func:`histogram_columns` of samples), ``counts[t, s]`` the
        records of ``task_names[t]`` for sample ``s``, ``boxes`` every box of the samples (n × 4) and
        ``box_sample`` the sample each belongs to.  The same buckets come out as from the per-sample loop
        (``searchsorted`` left is ``bisect_left``)."""
        written = np.flatnonzero(counts.sum(axis=0)).tolist() if len(task_names) else []
        if not written:
            return
        key = split_name or UNSPLIT_KEY
        split = self._split(key)
        tasks = self.records.setdefault(key, Counter())
        self.written += len(written)
        split["written"] += len(written)
        for task, n in zip(task_names, counts.sum(axis=1).tolist(), strict=True):
            if n:
                tasks[task] += n
        words = [len(texts[i].split()) for i in written]
        _add_buckets(self.text_words, np.array(words, dtype=np.float64), WORD_BUCKETS, _WORD_LABELS)
        regions = np.asarray(region_counts, dtype=np.float64)[written]
        _add_buckets(self.regions_per_sample, regions, REGION_BUCKETS, _REGION_LABELS)
        keep = np.zeros(len(texts), dtype=bool)
        keep[written] = True
        sizes = np.asarray(sizes, dtype=np.float64)
        chosen = keep[box_sample] & (sizes[box_sample] > 0)
        b = boxes[chosen]
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / sizes[box_sample[chosen]]
        _add_buckets(self.box_area, areas, AREA_BUCKETS, _AREA_LABELS)

    def count_read_many(self, split: str | None, n: int) -> None:
        self.read += n
        self._split(split)["read"] += n

    def count_rejected(self, split: str | None, reason: str) -> None:
        self.rejected += 1
        self._split(split)["rejected"] += 1
        self.reject_reasons[reason] += 1

    def count_filtered(self, split: str | None, reason: str, n: int = 1) -> None:
        self.filtered += n
        self._split(split)["filtered"] += n
        self.filter_reasons[reason] += n

    @property
    def balanced(self) -> bool:
        return self.read == self.written + self.rejected + self.filtered

    def total_records(self) -> int:
        return sum(sum(c.values()) for c in self.records.values())

    def merge(self, other: Tally) -> None:
        self.read += other.read
        self.written += other.written
        self.rejected += other.rejected
        self.filtered += other.filtered
        for name in ("splits", "records"):
            mine = getattr(self, name)
            for key, counter in getattr(other, name).items():
                mine.setdefault(key, Counter()).update(counter)
        for name in ("reject_reasons", "filter_reasons", "notes", "text_words", "box_area", "regions_per_sample"):
            getattr(self, name).update(getattr(other, name))
        for task, example in other.examples.items():
            self.examples.setdefault(task, example)

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "written": self.written,
            "rejected": self.rejected,
            "filtered": self.filtered,
            "splits": {k: dict(sorted(v.items())) for k, v in sorted(self.splits.items())},
            "records": {k: dict(sorted(v.items())) for k, v in sorted(self.records.items())},
            "reject_reasons": dict(sorted(self.reject_reasons.items())),
            "filter_reasons": dict(sorted(self.filter_reasons.items())),
            "notes": dict(sorted(self.notes.items())),
            "text_words": dict(self.text_words),
            "box_area": dict(self.box_area),
            "regions_per_sample": dict(self.regions_per_sample),
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tally:
        return cls(
            read=d["read"],
            written=d["written"],
            rejected=d["rejected"],
            filtered=d["filtered"],
            splits={k: Counter(v) for k, v in d["splits"].items()},
            records={k: Counter(v) for k, v in d["records"].items()},
            reject_reasons=Counter(d["reject_reasons"]),
            filter_reasons=Counter(d["filter_reasons"]),
            notes=Counter(d["notes"]),
            text_words=Counter(d["text_words"]),
            box_area=Counter(d["box_area"]),
            regions_per_sample=Counter(d["regions_per_sample"]),
            examples=dict(d.get("examples", {})),
        )
