"""The error policy shared by every reader, writer and command (DESIGN §6).

Two kinds of problem exist:

* a **whole-file problem** (missing, truncated, wrong format): :class:`InputFileError`, which the CLI
  turns into one clear message naming the file and exit code 2;
* a **record problem**: the reader yields a :class:`Reject` (or the pipeline builds one from a
  :class:`RecordError`), which goes to ``rejects/`` with a reason code while the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # validation failed, --strict stopped, --max-rejects exceeded
EXIT_BAD_INPUT = 2  # whole-file problem or bad usage


class GroundingConvertError(Exception):
    """Base of the errors the CLI reports as a message instead of a traceback."""

    exit_code = EXIT_FAILED


class InputFileError(GroundingConvertError):
    """A whole input file is unusable: names the file and what was expected."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, path: str, problem: str, expected: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.expected = expected
        text = f"{self.path}: {problem}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)

    def __reduce__(self):  # survive the trip back from a worker process
        return (type(self), (self.path, self.problem, self.expected))


class UsageError(GroundingConvertError):
    """Options that do not fit together, an unknown reader, a non-empty output without --overwrite."""

    exit_code = EXIT_BAD_INPUT


class OutputWriteError(GroundingConvertError):
    """Writing into the output failed (disk full, quota, permission): names the file and the OS error."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, path: str, error: str):
        self.path, self.error = str(path), error
        super().__init__(
            f"cannot write {self.path}: {error}; committed partitions are kept: "
            "fix the cause (free space, quota, permissions), then rerun with --resume"
        )

    def __reduce__(self):
        return (type(self), (self.path, self.error))


class WorkerLost(GroundingConvertError):
    """A worker process died without a result (killed by the system, e.g. out of memory)."""


class StrictStop(GroundingConvertError):
    """``--strict`` met its first bad record, or ``--max-rejects`` was exceeded."""

    exit_code = EXIT_FAILED


class ReaderCrash(GroundingConvertError):
    """An unexpected exception inside a plugin: reported with the partition, traceback kept for --debug."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, traceback_text: str = ""):
        self.traceback_text = traceback_text
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.traceback_text))


class RecordError(ValueError):
    """Raised inside a reader or writer for one bad record; the pipeline turns it into a Reject."""

    def __init__(self, reason: str, message: str, raw: Any = None):
        self.reason = reason
        self.message = message
        self.raw = raw
        super().__init__(f"{reason}: {message}")

    def __reduce__(self):
        return (type(self), (self.reason, self.message, self.raw))


# Reason codes used across readers and writers; plugins may add their own (kebab-case).
REASONS = {
    "missing-key": "a required field is absent",
    "wrong-type": "a field has the wrong type",
    "bad-size": "image width/height missing, non-positive or not finite",
    "bad-box": "a box is not four finite numbers",
    "empty-box": "a box has no area inside the image",
    "bad-span": "a span does not match the text",
    "unknown-reference": "an id refers to nothing (chain, annotation, box or image)",
    "duplicate-id": "the same sample id was produced twice",
    "bad-text": "text is not valid UTF-8 or is empty",
    "missing-image": "the image is needed but cannot be found",
    "unsafe-path": "a file name from the input would reach outside the image root or output folder",
    "size-mismatch": "the image under --image-root is not the size the annotation gives (--size-mismatch)",
    "bad-record": "the record cannot be parsed",
    "render-failed": "the writer cannot spell this sample",
}

# Why records are left out on purpose (Filtered) — counted, never written to rejects/.
FILTER_REASONS = {
    "split": "not the split asked for with --split",
    "no-task-applies": "none of the requested tasks can be made from the sample (e.g. no boxes)",
    "download-failed": "GRIT/img2dataset row whose image download failed",
    "no-regions": "GRIT record with no span left after --min-score",
}

# Repairs and observations (Note) — counted in the summary ("notes") and the card; never records.
NOTES = {
    "clipped-box": "a box partly outside the image was clipped to it",
    "below-min-score": "a GRIT span below --min-score was dropped from its record",
    "telling-without-groundings": "Visual7W telling QA read without a grounding-annotations file",
    "size-rescaled": "the image is not the annotated size; boxes scaled to it (--size-mismatch rescale)",
    "size-mismatch-trusted": "the image is not the annotated size; annotation kept (--size-mismatch trust)",
    "size-from-image": "the annotation has no image size; the image header under --image-root gave it",
    "split-ids-without-files": "Flickr30K ids a split file lists but whose Sentences file is absent (excerpts)",
}


@dataclass(slots=True)
class Reject:
    """A record that was not converted, with why and where (written to ``rejects/*.jsonl``)."""

    reason: str
    message: str
    source: str
    position: str | int | None = None
    raw: Any = None
    split: str | None = None  # when the reader knows it, for per-split accounting

    def to_record(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "message": self.message,
            "source": self.source,
            "position": None if self.position is None else str(self.position),
            "raw": _small(self.raw),
        }


@dataclass(slots=True)
class Filtered:
    """A record left out on purpose (wrong split, failed download, below --min-score...), counted."""

    reason: str
    source: str = ""
    position: str | int | None = None
    split: str | None = None


@dataclass(slots=True)
class Note:
    """A repair the reader made and counted (e.g. a box clipped to the image) on a kept record."""

    what: str
    count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def _small(raw: Any, limit: int = 4096) -> Any:
    """Keep the raw record only when it is small; otherwise a truncated repr."""
    if raw is None:
        return None
    text = repr(raw)
    if len(text) <= limit:
        if isinstance(raw, str | int | float | bool | list | dict):
            return raw
        return text
    return text[:limit] + "…"
