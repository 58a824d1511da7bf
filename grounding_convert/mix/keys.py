"""The hashes a mixture is made of: which samples a weight keeps, where a record lands in the shuffle, which
records count as duplicates, and whether an image belongs to an evaluation set.

All of them depend on (seed, ids, text) only, never on the worker, the partition or the order of arrival,
so the mixture is the same for any number of workers and after ``--resume``.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from hashlib import blake2b

from ..schema import IMAGE_KEYS, Sample

# max_samples counts samples in this many hash bins per source (an upper bound, exact to one bin)
CAP_BINS = 1024
CAP_SHIFT = 64 - 10  # the top 10 bits of the sampling hash are its bin

ImageKey = tuple[str, int]


def hash64(*parts: object) -> int:
    """64 bits of blake2b over the parts joined by NUL (stable across processes, unlike ``hash``)."""
    return _digest("\x00".join(map(str, parts)))


def _digest(text: str) -> int:
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def sample_draw(seed: int, source: str, sample_id: str) -> int:
    """The sampling hash of one source sample: decides its weight draw and its max_samples bin."""
    return _digest(f"weight\x00{seed}\x00{source}\x00{sample_id}")


def copies(weight: float, draw: int) -> int:
    """How many times a sample goes into the mixture: ⌊w⌋, plus one more with probability frac(w).

    ``draw`` is uniform over 64 bits, so over many samples the count is within binomial noise of
    ``weight × samples`` (exactly that for whole weights).
    """
    whole = math.floor(weight)
    fraction = weight - whole
    return whole + (1 if fraction > 0 and draw < fraction * 2.0**64 else 0)


def copy_of(sample: Sample, k: int) -> Sample:
    """The ``k``-th copy (0 is the sample itself): a distinct id, so distinct records and template draws."""
    return sample if k == 0 else replace(sample, id=f"{sample.id}/w{k}")


def sample_keys(sample: Sample) -> list[ImageKey]:
    """Every identity of the sample's image: ``image.keys`` plus its own dataset's id."""
    keys = [(name, value) for name, value in sample.image.keys.items() if name in IMAGE_KEYS]
    return keys


def image_identity(sample: Sample) -> str:
    """One name for the photo across datasets (for dedup): COCO id, else Flickr id, else VG id, else own id."""
    keys = sample.image.keys
    for name in IMAGE_KEYS:
        if name in keys:
            return f"{name}:{keys[name]}"
    return f"{sample.dataset}:{sample.image.id if sample.image.id is not None else sample.image.file}"


_SPACE = re.compile(r"\s+")


def normalized(text: str) -> str:
    """Case and whitespace do not make a different text."""
    return _SPACE.sub(" ", text).strip().casefold()


def record_text(sample: Sample, task: str, suffix: str) -> str:
    """What a record is about: its region's phrase for rec/reg (``rec/3`` → region 3), else the sample text."""
    if task in ("rec", "reg"):
        _, _, index = suffix.rpartition("/")
        if index.isdigit() and int(index) < len(sample.regions):
            return sample.regions[int(index)].phrase
    return sample.text


def dedup_key(seed: int, identity: str, task: str, text: str) -> int:
    return _digest(f"dedup\x00{seed}\x00{identity}\x00{task}\x00{normalized(text)}")


def order_key(seed: int, source: int, record_id: str) -> int:
    """Where a record stands in the shuffle (runs for every record: one f-string, one blake2b).

    The source takes part so that one dataset listed twice (same record ids) still spreads both copies.
    """
    return _digest(f"order\x00{seed}\x00{source}\x00{record_id}")


class Exclusions:
    """Image keys of the evaluation sets, by set name (in recipe order: a sample counts under the first)."""

    def __init__(self, sets: dict[str, frozenset[ImageKey]]):
        self.sets = sets

    def hit(self, sample: Sample) -> str | None:
        if not self.sets:
            return None
        keys = sample_keys(sample)
        if not keys:
            return None
        for name, members in self.sets.items():
            for key in keys:
                if key in members:
                    return name
        return None

    def to_dict(self) -> dict[str, dict[str, list[int]]]:
        out: dict[str, dict[str, list[int]]] = {}
        for name, members in self.sets.items():
            by_space: dict[str, list[int]] = {}
            for space, value in members:
                by_space.setdefault(space, []).append(value)
            out[name] = {space: sorted(values) for space, values in sorted(by_space.items())}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, list[int]]]) -> Exclusions:
        return cls(
            {name: frozenset((space, v) for space, vs in spaces.items() for v in vs) for name, spaces in data.items()}
        )
