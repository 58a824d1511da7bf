"""``grounding-convert synth``: write a dataset's native layout with tiny real images, for tests and CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..synth import GENERATORS, generate
from .common import parse_pairs, reported_errors


def synth_command(
    dataset: Annotated[str, typer.Option(help=f"One of: {', '.join(GENERATORS)}.")],
    output: Annotated[Path, typer.Option(help="Folder to write the native files into.")],
    images: Annotated[int, typer.Option(help="How many images to make.")] = 20,
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-O", help="Generator option KEY=VALUE (e.g. layout=img2dataset for grit)."),
    ] = None,
) -> None:
    """Write synthetic data in the dataset's exact published layout."""
    with reported_errors():
        options = {key: _typed(value) for key, value in parse_pairs(option, "-O").items()}
        counts = generate(dataset, output, images=images, seed=seed, **options)
        typer.echo(
            f"wrote {dataset} to {output}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if isinstance(v, int))
        )


def _typed(value: str) -> object:
    """``-O write_images=false`` → False, ``-O regions_per_image=5`` → 5; anything else stays text."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(value)
    except ValueError:
        return value
