"""``grounding-convert synth``: write a dataset's native layout with tiny real images, for tests and CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..option_types import SEED, SYNTH_IMAGES
from ..synth import GENERATORS, generate
from .common import parse_pairs, reported_errors
from .options import checked


def synth_command(
    dataset: Annotated[str, typer.Option(help=f"One of: {', '.join(GENERATORS)}.")],
    output: Annotated[Path, typer.Option(help="Folder to write the native files into.")],
    images: Annotated[int, checked(SYNTH_IMAGES, help="How many images to make.", metavar="N")] = 20,
    seed: Annotated[int, checked(SEED, help="Same seed, same files.", metavar="N")] = 0,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-O", help="Generator option KEY=VALUE (e.g. layout=img2dataset for grit)."),
    ] = None,
) -> None:
    """Write synthetic data in the dataset's exact published layout."""
    with reported_errors():
        counts = generate(dataset, output, images=images, seed=seed, **parse_pairs(option, "-O"))
        typer.echo(
            f"wrote {dataset} to {output}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if isinstance(v, int))
        )
