"""A finished output to read back with the ``records`` reader: synthetic Flickr30K Entities → ``writer``."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import flickr30k_entities


def generate(
    output: Path, images: int, seed: int, writer: str = "kosmos-2", format: str = "parquet", write_images: bool = False
) -> dict[str, int]:
    from ..engine.runner import RunOptions, convert, make_job

    source = output.parent / f".{output.name}-source"
    flickr30k_entities.generate(source, images=images, seed=seed, write_images=False)
    try:
        job = make_job(input=str(source), output=str(output), writer=writer, reader="flickr30k-entities", format=format)
        result = convert(job, RunOptions(progress=False))
    finally:
        shutil.rmtree(source, ignore_errors=True)
    return {"samples": result.tally.written, "records": result.tally.total_records()}
