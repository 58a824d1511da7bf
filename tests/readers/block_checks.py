"""Shared checks that a reader's ``read_blocks`` gives what its ``read`` gives (samples, rejects, notes)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from grounding_convert.errors import Note, Reject
from grounding_convert.readers.base import Reader, SampleBlock
from grounding_convert.schema import Sample


def accounting(items: list) -> Counter:
    """Samples, rejects by reason and notes by what: a reader's full accounting."""
    out: Counter = Counter()
    for item in items:
        if isinstance(item, Sample):
            out["sample"] += 1
        elif isinstance(item, Reject):
            out[f"reject:{item.reason}"] += 1
        elif isinstance(item, Note):
            out[f"note:{item.what}"] += item.count
        else:
            out[type(item).__name__] += 1
    return out


def blocks_and_rows(reader: Reader, path: Path | str) -> tuple[list, list, int]:
    """(read's items, read_blocks' items with each block expanded into its samples, blocks seen)."""
    rows, expanded, blocks = [], [], 0
    for partition in reader.plan(str(path)):
        rows += reader.read(partition)
        for item in reader.read_blocks(partition):
            if isinstance(item, SampleBlock):
                blocks += 1
                expanded += item.samples()
                expanded += [Note(what, count) for what, count in item.notes.items()]
            else:
                expanded.append(item)
    return rows, expanded, blocks


def same_accounting(rows: list, expanded: list) -> None:
    samples = [i for i in rows if isinstance(i, Sample)]
    assert repr(samples) == repr([i for i in expanded if isinstance(i, Sample)])  # every sample, in order
    rejects = [i for i in rows if isinstance(i, Reject)]
    assert repr(rejects) == repr([i for i in expanded if isinstance(i, Reject)])  # every reject, in order
    assert accounting(rows) == accounting(expanded)
