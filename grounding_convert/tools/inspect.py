"""``inspect``: what a dataset holds and what is wrong with it, read through its reader, nothing written.

Meant as the first thing to run on a new download: counts per split, how boxes and phrases are
distributed, and the problems a conversion would meet (rejects, repairs, boxes outside the image,
missing sizes, spans that do not match the text).  Streaming: memory stays flat whatever the input size.
"""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..boxes import is_empty, is_finite, is_inside
from ..errors import Filtered, GroundingConvertError, Note, ReaderCrash, Reject
from ..option_types import EXAMPLES, LIMIT, check
from ..plugins import detect_reader, get_reader
from ..schema import Sample

#: problems looked for in every kept sample, with what they mean
PROBLEMS = {
    "out-of-image-box": "a box reaches outside the image",
    "non-finite-box": "a box is not four finite numbers",
    "empty-box": "a box has no area",
    "missing-size": "the image width/height is unknown or not positive",
    "empty-text": "the sample text is empty",
    "empty-phrase": "a region has an empty phrase",
    "region-without-boxes": "a region has no box (cannot be used for REC/REG)",
    "span-mismatch": "a region's span is out of range or does not cut its phrase out of the text",
}
EXAMPLES_PER_KIND = 3
UNSPLIT = "(none)"


@dataclass
class InspectReport:
    """Everything ``inspect`` found; ``to_dict`` is what ``--json`` prints."""

    input: str
    reader: str
    partitions: int = 0
    samples: int = 0
    samples_per_split: dict[str, int] = field(default_factory=dict)
    regions: int = 0
    regions_by_role: dict[str, int] = field(default_factory=dict)
    boxes: int = 0
    boxes_per_region: dict[str, int] = field(default_factory=dict)
    phrase_words: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    reject_examples: list[str] = field(default_factory=list)
    repairs: dict[str, int] = field(default_factory=dict)
    filtered: int = 0
    filters: dict[str, int] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)
    problem_examples: dict[str, list[str]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    limited: bool = False  # stopped at --limit before the end of the input

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def words_bucket(count: int) -> str:
    return str(count) if count <= 10 else "11-20" if count <= 20 else "21+"


def boxes_bucket(count: int) -> str:
    return str(count) if count < 10 else "10+"


def bucket_order(key: str) -> int:
    """Sort key of a bucket label ("3", "11-20", "21+", "10+") by its lower bound."""
    return int(key.split("-")[0].rstrip("+"))


def inspect(
    input: str,
    reader: str | None = None,
    reader_options: dict[str, Any] | None = None,
    limit: int | None = None,
    examples: int = 3,
) -> InspectReport:
    """Read ``input`` with its reader (detected when not named) and describe it.

    Stops after ``limit`` samples; keeps the first ``examples`` samples as canonical records.
    """
    if limit is not None:
        limit = check("--limit", LIMIT, limit)
    examples = check("--examples", EXAMPLES, examples)
    name = reader or detect_reader(input)
    plugin = get_reader(name).from_mapping(dict(reader_options or {}))
    partitions = plugin.plan(input)
    report = InspectReport(input=str(input), reader=name, partitions=len(partitions))
    survey = Survey(report, examples)
    report.limited = limit == 0  # plan only: no partition is read
    for partition in partitions if not report.limited else ():
        items = plugin.read(partition)
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            except GroundingConvertError:
                raise
            except Exception as exc:  # a reader bug: name the partition, keep the traceback for --debug
                raise ReaderCrash(
                    f"{partition.source} (partition {partition.key}): unexpected {type(exc).__name__}: {exc}",
                    traceback.format_exc(),
                ) from exc
            if isinstance(item, Sample) and limit is not None and report.samples >= limit:
                report.limited = True
                break
            survey.add(item)
        if report.limited:
            break
    survey.finish()
    return report


class Survey:
    """Counts read items into an :class:`InspectReport` (``add`` each item, then ``finish`` once)."""

    def __init__(self, report: InspectReport, examples: int):
        self.report = report
        self.examples = examples
        self.splits: Counter[str] = Counter()
        self.roles: Counter[str] = Counter()
        self.boxes_per_region: Counter[str] = Counter()
        self.phrase_words: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.repairs: Counter[str] = Counter()
        self.filters: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()

    def add(self, item: Any) -> None:
        r = self.report
        if isinstance(item, Sample):
            self.sample(item)
        elif isinstance(item, Reject):
            r.rejected += 1
            self.rejects[item.reason] += 1
            if len(r.reject_examples) < 10:
                r.reject_examples.append(f"{item.reason}: {item.message}")
        elif isinstance(item, Filtered):
            r.filtered += 1
            self.filters[item.reason] += 1
        elif isinstance(item, Note):
            self.repairs[item.what] += item.count

    def sample(self, s: Sample) -> None:
        r = self.report
        r.samples += 1
        self.splits[s.split or UNSPLIT] += 1
        if len(r.examples) < self.examples:
            r.examples.append(s.to_record())
        w, h = s.image.width, s.image.height
        sized = isinstance(w, int | float) and isinstance(h, int | float) and w > 0 and h > 0
        if not sized:
            self.problem("missing-size", s, f"image {s.image.file!r} is {w}x{h}")
        if not s.text.strip():
            self.problem("empty-text", s, "no text")
        for i, region in enumerate(s.regions):
            r.regions += 1
            r.boxes += len(region.boxes)
            self.roles[region.role or "region"] += 1
            self.boxes_per_region[boxes_bucket(len(region.boxes))] += 1
            self.phrase_words[words_bucket(len(region.phrase.split()))] += 1
            where = f"region {i} {region.phrase!r}"
            if not region.phrase.strip():
                self.problem("empty-phrase", s, f"region {i}")
            if not region.boxes:
                self.problem("region-without-boxes", s, where)
            if region.span is not None:
                start, end = region.span
                if not (0 <= start <= end <= len(s.text)) or s.text[start:end] != region.phrase:
                    self.problem(
                        "span-mismatch",
                        s,
                        f"{where}: span {list(region.span)} of the text is {s.text[max(0, start) : max(0, end)]!r}",
                    )
            for box in region.boxes:
                if not is_finite(box):
                    self.problem("non-finite-box", s, f"{where}: box {box}")
                    continue
                if is_empty(box):
                    self.problem("empty-box", s, f"{where}: box {box}")
                if sized and not is_inside(box, w, h):
                    self.problem("out-of-image-box", s, f"{where}: box {box} outside the {w}x{h} image")

    def problem(self, kind: str, s: Sample, message: str) -> None:
        self.problems[kind] += 1
        shown = self.report.problem_examples.setdefault(kind, [])
        if len(shown) < EXAMPLES_PER_KIND:
            shown.append(f"{s.id}: {message}")

    def finish(self) -> None:
        r = self.report
        r.samples_per_split = dict(sorted(self.splits.items()))
        r.regions_by_role = dict(sorted(self.roles.items()))
        r.boxes_per_region = dict(sorted(self.boxes_per_region.items(), key=lambda kv: bucket_order(kv[0])))
        r.phrase_words = dict(sorted(self.phrase_words.items(), key=lambda kv: bucket_order(kv[0])))
        r.rejects = dict(self.rejects.most_common())
        r.repairs = dict(self.repairs.most_common())
        r.filters = dict(self.filters.most_common())
        r.problems = {k: self.problems[k] for k in PROBLEMS if self.problems[k]}
