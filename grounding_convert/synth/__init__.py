"""Native-layout fixture generators, one module per dataset (tiny real JPEGs included).

Each module exposes ``generate(output: Path, images: int, seed: int) -> dict[str, int]`` that writes
the dataset's files exactly as its authors publish them and returns what it wrote (images, samples,
regions, ...) so tests can compare a reader's counts with the generator's.
"""

from __future__ import annotations

import inspect
import types
import typing
from importlib import import_module
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..option_types import Flag, OptionType, Real, Text, Whole, detail

GENERATORS = {
    "flickr30k-entities": "flickr30k_entities",
    "visual-genome": "visual_genome",
    "refcoco": "refcoco",
    "refcoco+": "refcoco",
    "refcocog": "refcoco",
    "visual7w": "visual7w",
    "grit": "grit",
    "coco": "coco",
    "mdetr": "coco:generate_mdetr",
    "odvg": "odvg",
    "refcoco-hf": "refcoco_hf",
    "records": "records",
}


def generate(dataset: str, output: Path, images: int, seed: int, **options: Any) -> dict[str, int]:
    if dataset not in GENERATORS:
        raise UsageError(f"no synth generator for {dataset!r} (have: {', '.join(GENERATORS)})")
    module_name, _, function = GENERATORS[dataset].partition(":")
    generate_fn = getattr(import_module(f"{__name__}.{module_name}"), function or "generate")
    options = checked_options(dataset, generate_fn, options)
    if dataset in ("refcoco", "refcoco+", "refcocog"):
        options.setdefault("dataset", dataset)
    return generate_fn(Path(output), images=images, seed=seed, **options)


def checked_options(dataset: str, generate_fn: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Generator options (``synth -O KEY=VALUE``) checked against the generator's keyword parameters.

    Unknown keys and values of the wrong type are refused with the key, the value and what is accepted,
    instead of being swallowed by ``**_`` or failing deep inside a generator.
    """
    hints = typing.get_type_hints(generate_fn)
    params = [
        p.name
        for p in inspect.signature(generate_fn).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("output", "images", "seed")
    ]
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in params:
            raise UsageError(f"synth {dataset!r} has no option {key!r} (its options: {', '.join(params) or 'none'})")
        kind = _kind(hints.get(name))
        try:
            out[name] = value if kind is None or value is None else kind.parse(value)
        except ValueError:
            raise UsageError(f"Invalid value for option {key!r} of synth {dataset!r}: {detail(value, kind)}") from None
    return out


def _kind(hint: Any) -> OptionType | None:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = args[0]
    return {bool: Flag(), int: Whole(min=0), float: Real(min=0.0, max=1.0), str: Text()}.get(hint)
