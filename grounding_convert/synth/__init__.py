"""Native-layout fixture generators, one module per dataset (tiny real JPEGs included).

Each module exposes ``generate(output: Path, images: int, seed: int) -> dict[str, int]`` that writes
the dataset's files exactly as its authors publish them and returns what it wrote (images, samples,
regions, ...) so tests can compare a reader's counts with the generator's.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from ..errors import UsageError

GENERATORS = {
    "flickr30k-entities": "flickr30k_entities",
    "visual-genome": "visual_genome",
    "refcoco": "refcoco",
    "refcoco+": "refcoco",
    "refcocog": "refcoco",
    "visual7w": "visual7w",
    "grit": "grit",
}


def generate(dataset: str, output: Path, images: int, seed: int, **options: Any) -> dict[str, int]:
    if dataset not in GENERATORS:
        raise UsageError(f"no synth generator for {dataset!r} (have: {', '.join(GENERATORS)})")
    module = import_module(f"{__name__}.{GENERATORS[dataset]}")
    if dataset.startswith("refcoco"):
        options.setdefault("dataset", dataset)
    return module.generate(Path(output), images=images, seed=seed, **options)
