"""grounding_convert: visual-grounding datasets → grounding-model training records.

Readers (one per dataset) produce canonical :class:`~grounding_convert.schema.Sample` objects; writers
(one per model) render them as training records; the engine shards, accounts and resumes.

The Python API (stable; README "Library use")::

    import grounding_convert as gc
    result = gc.convert("flickr30k_entities/", "out/", writer="qwen-vl", format="jsonl")
    samples = gc.read("flickr30k_entities/", split="test")          # canonical samples, streamed
    records = gc.render(samples, "kosmos-2", tasks=["rec"], seed=0)  # training records
    ds = gc.to_dataset("out/")                                      # datasets.DatasetDict

The names are loaded on first use, so ``import grounding_convert`` does not import pyarrow or datasets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["convert", "read", "render", "to_dataset", "Result", "ConvertOptions", "__version__"]

if TYPE_CHECKING:
    from .api import ConvertOptions, Result, convert, read, render, to_dataset


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'grounding_convert' has no attribute {name!r}")
