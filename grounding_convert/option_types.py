"""What each numeric option accepts, checked once for the CLI, the Python API and ``-O/-W KEY=VALUE``.

An option that cannot work (``--max-records-per-shard 0`` wrote empty shards forever, ``--limit -1``
"converted" nothing and exited 0) is refused before anything is written, with one line naming the option,
the value and what is accepted: ``Invalid value for '--limit': -1 (accepted: a whole number ≥ 0; 0 only
plans, nothing is read or written)``.  The CLI turns these types into typer parsers
(:func:`grounding_convert.cli.options.checked`); the API, the engine and the reader/writer option
dataclasses call :func:`check` — the same text either way.

Kept free of typer, pyarrow and the plugins so ``import grounding_convert`` stays light.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class OptionType:
    """A value type with an accepted range; ``parse`` raises ValueError with the reason."""

    def parse(self, value: Any) -> Any:
        raise NotImplementedError

    def accepted(self) -> str:
        """What is accepted, as the end of the one-line message."""
        raise NotImplementedError

    def bad_examples(self) -> list[str]:
        """Values that must be refused (tests drive every option with them)."""
        return ["x"]


def check(flag: str, kind: OptionType, value: Any) -> Any:
    """``value`` parsed by ``kind``, or :class:`UsageError` with the same line the CLI prints."""
    try:
        return kind.parse(value)
    except ValueError:
        raise UsageError(invalid(flag, value, kind)) from None


def invalid(flag: str, value: Any, kind: OptionType) -> str:
    return f"Invalid value for '{flag}': {detail(value, kind)}"


def detail(value: Any, kind: OptionType) -> str:
    shown = value if isinstance(value, str) else repr(value)
    return f"{shown} (accepted: {kind.accepted()})"


def _number(value: Any, cast: type) -> Any:
    if isinstance(value, bool):
        raise ValueError("a bool is not a number")
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text:
            raise ValueError("empty")
        return cast(text)  # int("1.5") and float("x") raise ValueError
    if cast is int and isinstance(value, int):
        return value
    if cast is float and isinstance(value, int | float):
        return float(value)
    raise ValueError(f"not a {cast.__name__}")


def _bounds(low: float | None, high: float | None, low_open: bool = False) -> str:
    ge = ">" if low_open else "≥"
    if low is not None and high is not None and not low_open:
        return f"from {low:g} to {high:g}"
    if low is not None and high is not None:
        return f"{ge} {low:g} and ≤ {high:g}"
    if low is not None:
        return f"{ge} {low:g}"
    if high is not None:
        return f"≤ {high:g}"
    return ""


@dataclass(frozen=True)
class Whole(OptionType):
    """An integer in ``[min, max]`` (either end open when None)."""

    min: int | None = None
    max: int | None = None
    note: str = ""  # e.g. "0 only plans"

    def parse(self, value: Any) -> int:
        number = _number(value, int)
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise ValueError("out of range")
        return number

    def accepted(self) -> str:
        bounds = _bounds(self.min, self.max)
        text = f"a whole number {bounds}" if bounds else "a whole number"
        return f"{text}; {self.note}" if self.note else text

    def bad_examples(self) -> list[str]:
        out = ["x", "1.5"]
        if self.min is not None:
            out.append(str(self.min - 1))
        if self.max is not None:
            out.append(str(self.max + 1))
        return out


@dataclass(frozen=True)
class Real(OptionType):
    """A finite number in ``[min, max]`` (``(min, max]`` with ``min_open``)."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False

    def parse(self, value: Any) -> float:
        number = _number(value, float)
        if not math.isfinite(number):
            raise ValueError("not finite")
        if self.min is not None and (number <= self.min if self.min_open else number < self.min):
            raise ValueError("below")
        if self.max is not None and number > self.max:
            raise ValueError("above")
        return number

    def accepted(self) -> str:
        return ("a number " + _bounds(self.min, self.max, self.min_open)).strip()

    def bad_examples(self) -> list[str]:
        out = ["x", "nan"]
        if self.min is not None:
            out.append(f"{self.min:g}" if self.min_open else f"{self.min - 1:g}")
        if self.max is not None:
            out.append(f"{self.max + 1:g}")
        return out


_SIZE = re.compile(r"(\d+)\s*([kmg]?)(i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": KIB, "m": MIB, "g": GIB}


@dataclass(frozen=True)
class ByteSize(OptionType):
    """A byte count, plain or with a binary unit (``64KiB``, ``512M``, ``1GiB``), at least ``min``."""

    min: int = 64 * KIB

    def parse(self, value: Any) -> int:
        if isinstance(value, str):
            m = _SIZE.fullmatch(value.strip().replace("_", ""))
            if not m:
                raise ValueError("not a size")
            number = int(m.group(1)) * _UNITS[m.group(2).lower()]
        else:
            number = _number(value, int)
        if number < self.min:
            raise ValueError("too small")
        return number

    def accepted(self) -> str:
        return f"a byte count ≥ {self.min:,} ({self.min // KIB} KiB), e.g. 65536, 64KiB, 512MiB, 1GiB"

    def bad_examples(self) -> list[str]:
        return ["x", "0", str(self.min - 1), "-1MiB"]


@dataclass(frozen=True)
class Workers(OptionType):
    """A number of processes ≥ 1, or ``auto``: the CPUs this process may run on."""

    def parse(self, value: Any) -> int:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return available_cpus()
        number = _number(value, int)
        if number < 1:
            raise ValueError("below 1")
        return number

    def accepted(self) -> str:
        return "a whole number ≥ 1, or auto (= the CPUs available)"

    def bad_examples(self) -> list[str]:
        return ["x", "0", "-2", "1.5"]


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask under Linux/SLURM), else all of the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


_REJECTS = re.compile(r"(\d+(?:\.\d+)?)\s*(%?)")


@dataclass(frozen=True)
class MaxRejects(OptionType):
    """A count of rejected records ≥ 0, or a share ``P%`` with P from 0 to 100; kept as its text."""

    def parse(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError("not a count")
        text = value.strip()
        split_limits(text)
        return text

    def accepted(self) -> str:
        return "a count ≥ 0 like 100, or a percentage from 0% to 100% like 5%"

    def bad_examples(self) -> list[str]:
        return ["x", "-1", "150%", "1.5", "-5%"]


def split_limits(text: str | None) -> tuple[int | None, float | None]:
    """``"100"`` → (100, None); ``"5%"`` → (None, 0.05); ValueError for anything else."""
    if text is None:
        return None, None
    m = _REJECTS.fullmatch(text.strip())
    if not m:
        raise ValueError("not a count or percentage")
    number, pct = m.groups()
    if pct:
        share = float(number) / 100.0
        if share > 1.0:
            raise ValueError("above 100%")
        return None, share
    if "." in number:
        raise ValueError("a count is whole")
    return int(number), None


@dataclass(frozen=True)
class Choice(OptionType):
    """One of a fixed set of words."""

    choices: tuple[str, ...]

    def parse(self, value: Any) -> str:
        if value not in self.choices:
            raise ValueError("not a choice")
        return value

    def accepted(self) -> str:
        return "one of " + ", ".join(self.choices)

    def bad_examples(self) -> list[str]:
        return ["?"]


@dataclass(frozen=True)
class Flag(OptionType):
    """A yes/no value written as text (``-W embed_images=true``): anything else is refused, not False."""

    def parse(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off"):
                return False
        raise ValueError("not a bool")

    def accepted(self) -> str:
        return "true or false (also yes/no, on/off, 1/0)"

    def bad_examples(self) -> list[str]:
        return ["maybe", "2"]


@dataclass(frozen=True)
class Text(OptionType):
    """Any string (a path, a name)."""

    def parse(self, value: Any) -> str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):
            raise ValueError("not text")
        return value

    def accepted(self) -> str:
        return "text"

    def bad_examples(self) -> list[str]:
        return []


# --- the shared options: one definition for every command and the API ------------------------------------

SEED = Whole()
LIMIT = Whole(min=0, note="0 only plans, nothing is read or written")
SHARD_RECORDS = Whole(min=1)
SHARD_BYTES = ByteSize()
WORKERS = Workers()
NUM_WORKERS = Whole(min=1)
WORKER_INDEX = Whole(min=0)
MAX_REJECTS = MaxRejects()
PIXELS = Whole(min=1)  # qwen2.5-vl smart_resize min/max pixels and factor
TURNS = Whole(min=1)  # records of one image and task packed into one conversation
MIN_SCORE = Real(min=0.0, max=1.0)
EXAMPLES = Whole(min=0)
PREVIEW_RECORDS = Whole(min=1)
TILE = Whole(min=16, max=4096)  # pixels of a preview tile
SCALE = Real(min=0.0, max=16.0, min_open=True)
COLUMNS = Whole(min=1)
SYNTH_IMAGES = Whole(min=1)
PER_PARTITION = Whole(min=1)  # *_per_partition reader options: a partition holds at least one item


def bounded(default: Any, kind: OptionType) -> Any:
    """A dataclass field of a reader/writer Options class with the range ``-O/-W`` values must meet."""
    from dataclasses import field

    return field(default=default, metadata={"accepts": kind})
