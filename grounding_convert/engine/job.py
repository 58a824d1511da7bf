"""A conversion job: everything that determines the output, in one picklable value.

The engine hands a :class:`Job` and a partition to whichever process runs it (pool worker, Ray task,
SLURM array slice); the worker rebuilds the reader and writer from their names.  ``identity`` is what
``--resume`` and ``finalize`` compare: same identity, same bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from ..errors import UsageError
from ..option_types import MAX_REJECTS, invalid, split_limits
from ..plugins import get_reader, get_writer
from ..readers.base import Reader
from ..writers.base import Writer

JOB_FILE = "_progress/job.json"
PLAN_FILE = "_progress/plan.json"


@dataclass(frozen=True)
class Job:
    input: str
    reader: str
    writer: str
    output: str
    tasks: tuple[str, ...]
    format: str = "parquet"
    seed: int = 0
    reader_options: dict[str, Any] = field(default_factory=dict)
    writer_options: dict[str, Any] = field(default_factory=dict)
    max_records_per_shard: int = 100_000
    max_shard_bytes: int = 512 * 1024 * 1024
    strict: bool = False
    max_rejects: str | None = None
    limit: int | None = None
    turns: int = 1  # conversation writers: up to this many records of one image and task in one conversation
    # --image-root: images for containers that embed them (OFA's TSV) and the pipeline's size check (images.py)
    image_root: str | None = None
    size_mismatch: str = "reject"  # --size-mismatch: reject | rescale | trust

    def identity(self) -> dict[str, Any]:
        """The options that shape the output bytes (not workers, engine, resume or the output path)."""
        d = asdict(self)
        d.pop("output")
        d["tasks"] = list(self.tasks)
        return d

    def build(self) -> tuple[Reader, Writer]:
        return _build(self)

    def __hash__(self) -> int:
        return hash(repr(sorted(self.identity().items(), key=lambda kv: kv[0])) + self.output)


@lru_cache(maxsize=8)
def _build(job: Job) -> tuple[Reader, Writer]:
    """One reader and writer per process and job (templates and lookup tables load once)."""
    return (
        get_reader(job.reader).from_mapping(dict(job.reader_options)),
        get_writer(job.writer).from_mapping(dict(job.writer_options)),
    )


def parse_max_rejects(value: str | None) -> tuple[int | None, float | None]:
    """``"100"`` → (100, None); ``"5%"`` → (None, 0.05); counts below 0 and shares above 100% refused."""
    try:
        return split_limits(value)
    except ValueError:
        raise UsageError(invalid("--max-rejects", value, MAX_REJECTS)) from None


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Human sentence naming the options that changed between two identities."""
    changed = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            changed.append(f"{key}: was {old.get(key)!r}, now {new.get(key)!r}")
    return "; ".join(changed)
