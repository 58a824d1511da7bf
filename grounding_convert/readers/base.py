"""What every reader is (DESIGN §2): plan the input into partitions, read one partition into samples.

A reader yields :class:`~grounding_convert.schema.Sample` objects, and for records it cannot use a
:class:`~grounding_convert.errors.Reject` (bad) or :class:`~grounding_convert.errors.Filtered`
(left out on purpose), and :class:`~grounding_convert.errors.Note` for counted repairs such as a
clipped box.  It never prints and never decides about --strict: the pipeline does.  A whole-file
problem raises :class:`~grounding_convert.errors.InputFileError`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import Filtered, Note, Reject, UsageError
from ..option_types import Choice, Flag, OptionType, Real, Text, Whole, detail
from ..schema import Sample

ReadItem = Sample | Reject | Filtered | Note


@dataclass
class SampleBlock:
    """Consecutive plain samples of one split as columns: what a reader hands the pipeline's columnar path
    instead of one :class:`Sample` object per record (``Reader.read_blocks``).

    Every sample has an integer size > 0 and a non-empty text; the block lists its regions that have one or
    more boxes (none with a role, spans in text order, none overlapping).  ``sample(i)`` builds the very
    :class:`Sample` ``Reader.read`` would have yielded, for the samples that leave the columnar path.
    ``notes`` are the counts of the notes ``read`` would have yielded for these samples.
    """

    split: str | None
    ids: list[str]
    texts: list[str]
    files: list[str]  # image.file
    image_ids: list[str | None]  # image.id
    widths: Any  # numpy int64 per sample
    heights: Any
    region_sample: Any  # numpy int64 per region: its sample
    phrases: list[str]
    starts: Any  # numpy int64 per region: its span
    ends: Any
    region_boxes: Any  # numpy int32 offsets into boxes, one more than regions
    boxes: Any  # numpy float64 (boxes, 4)
    notes: dict[str, int]
    make: Any  # (i) -> Sample
    strings: list[str] = field(default_factory=list)  # the samples' other strings (urls...), for the UTF-8 check
    # where some samples also have regions without boxes (Flickr30K Entities' non-visual phrases): each
    # region's place among its sample's regions (record ids count them all), and each sample's number of
    # regions (the tally's histogram); None when every region of every sample is in the block
    region_index: Any = None
    region_counts: Any = None

    def __len__(self) -> int:
        return len(self.ids)

    def region_positions(self) -> np.ndarray:
        """Each region's place among its sample's regions (the number in its record ids)."""
        if self.region_index is not None:
            return np.asarray(self.region_index, dtype=np.int64)
        region_sample = np.asarray(self.region_sample, dtype=np.int64)
        firsts = np.searchsorted(region_sample, np.arange(len(self)))
        return np.arange(len(region_sample), dtype=np.int64) - firsts[region_sample]

    def regions_per_sample(self) -> np.ndarray:
        """Each sample's number of regions, those without boxes included (the tally's histogram)."""
        if self.region_counts is not None:
            return np.asarray(self.region_counts, dtype=np.int64)
        return np.bincount(np.asarray(self.region_sample, dtype=np.int64), minlength=len(self))

    def sample(self, i: int) -> Sample:
        return self.make(i)

    def samples(self) -> list[Sample]:
        return [self.make(i) for i in range(len(self.ids))]


@dataclass(frozen=True, slots=True)
class Partition:
    """A small, picklable description of one independent slice of the input.

    ``key`` is stable across runs (it names the commit marker and the shard files), and ``params``
    holds whatever the reader needs: file paths, byte ranges, row-group numbers, id lists.
    """

    index: int
    key: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReaderOptions:
    """Options every reader understands; readers subclass this to add their own fields."""

    split: str | None = None  # keep only this split (others are counted as filtered)


class Reader(ABC):
    """Base of all dataset readers.  Subclasses set ``name``, ``dataset`` and ``Options``."""

    name: ClassVar[str]
    dataset: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[ReaderOptions]] = ReaderOptions

    def __init__(self, options: ReaderOptions | None = None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Reader:
        """Build the reader from loose CLI values, refusing options it does not have."""
        return cls(build_options(cls.Options, values, owner=f"reader {cls.name!r}"))

    @abstractmethod
    def plan(self, input_path: str) -> list[Partition]:
        """Split the input into independent partitions, in a stable order (cheap: no full parse)."""

    @abstractmethod
    def read(self, partition: Partition) -> Iterator[ReadItem]:
        """Yield the samples (and rejects, filtered markers, notes) of one partition, in a stable order."""

    def read_blocks(self, partition: Partition) -> Iterator[ReadItem | SampleBlock]:
        """:meth:`read`, with runs of plain samples as :class:`SampleBlock` where the reader can make them
        without a Python object per sample (GRIT parquet); the same samples, in the same order."""
        return self.read(partition)

    @classmethod
    def detect(cls, path: str) -> bool:
        """True when ``path`` looks like this reader's native layout (used when --from is left out)."""
        return False

    def valid_unicode(self, partition: Partition) -> bool:
        """True when every string of this partition's samples is known to be valid Unicode.

        Then the pipeline skips its lone-surrogate check per sample.  Only say so when the strings come
        from a strict decoder (Arrow, orjson): JSON read by ``json``/``ijson``, pickles and tar member
        names can carry lone surrogates.
        """
        return False

    def input_files(self, input_path: str) -> Sequence[str | Path]:
        """The files this reader consumes (recorded with sizes in the manifest), as paths or path strings."""
        p = Path(input_path)
        if p.is_file():
            return [p]
        return sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []


def build_options(options_cls: type, values: dict[str, Any], owner: str) -> Any:
    """Fill an options dataclass from strings/values, each checked by its field's type and range.

    Unknown keys and values of the wrong type or outside the field's range (``bounded`` metadata) raise
    :class:`UsageError` naming the key, the value and what is accepted: the same for ``-O/-W KEY=VALUE``,
    the named CLI flags routed here and the Python API.
    """
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            known = ", ".join(sorted(f.replace("_", "-") for f in fields)) or "none"
            raise UsageError(f"{owner} has no option {key!r} (its options: {known})")
        kind = option_type(options_cls, name)
        if value is None or kind is None:
            kwargs[name] = value
            continue
        try:
            kwargs[name] = kind.parse(value)
        except ValueError:
            raise UsageError(f"Invalid value for option {key!r} of {owner}: {detail(value, kind)}") from None
    return options_cls(**kwargs)


def option_type(options_cls: type, name: str) -> OptionType | None:
    """The checked type of one Options field: its ``bounded`` metadata, else one read from its annotation."""
    found = {f.name: f for f in dataclasses.fields(options_cls)}[name]
    if "accepts" in found.metadata:
        return found.metadata["accepts"]
    hint = typing.get_type_hints(options_cls)[name]
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
        origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return Choice(tuple(map(str, typing.get_args(hint))))
    return {bool: Flag(), int: Whole(), float: Real(), str: Text()}.get(hint)
