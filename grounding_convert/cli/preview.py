"""``grounding-convert preview``: the decoded boxes of written records, drawn on their images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..option_types import COLUMNS, PREVIEW_RECORDS, SCALE, SEED, TILE
from ..tools.preview import render_preview
from .common import reported_errors
from .options import checked

Opt = typer.Option


def preview_command(
    output: Annotated[str, typer.Argument(help="An output directory written by convert.")],
    image_root: Annotated[
        str, Opt(help="Folder holding the dataset's images (record image paths are relative to it).")
    ],
    out: Annotated[Path, Opt("--out", "-o", help="FILE.png (contact sheet) or FILE.html (self-contained cards).")],
    n: Annotated[int, checked(PREVIEW_RECORDS, "--n", "-n", help="How many records to draw.", metavar="N")] = 24,
    task: Annotated[str | None, Opt(help="Only records of this task: rec, reg, grounded-caption, pointing.")] = None,
    seed: Annotated[
        int | None,
        checked(SEED, help="Draw a seeded random choice of records instead of the first ones.", metavar="N"),
    ] = None,
    tile: Annotated[int, checked(TILE, help="Fit each image into a square of this many pixels.", metavar="PX")] = 256,
    scale: Annotated[
        float | None,
        checked(SCALE, help="Display pixels per image pixel instead of --tile (1 = native size).", metavar="X"),
    ] = None,
    columns: Annotated[
        int | None, checked(COLUMNS, help="Tiles per row of the PNG sheet (default 6).", metavar="N")
    ] = None,
    labels: Annotated[bool, Opt(help="Write each phrase at its first box.")] = True,
) -> None:
    """Draw the boxes decoded from the records (the writer's own parser) on the images, as PNG or HTML."""
    with reported_errors():
        result = render_preview(
            output,
            image_root,
            out,
            n=n,
            task=task,
            seed=seed,
            tile=tile,
            scale=scale,
            columns=columns,
            labels=labels,
        )
        missing, unsafe = result.missing_images, result.unsafe_paths
        for problem in result.unparsable[:10]:
            typer.secho(f"  cannot decode {problem}", fg=typer.colors.RED, err=True)
        for problem in unsafe[:10]:
            typer.secho(f"  refused {problem}", fg=typer.colors.RED, err=True)
        if missing:
            typer.secho(
                f"  {len(missing)} image(s) missing under {image_root} (drawn as grey tiles), e.g. {missing[0]}",
                fg=typer.colors.YELLOW,
                err=True,
            )
        typer.echo(
            f"wrote {out}: {result.records} {result.writer} record(s)"
            + (f", {len(missing)} image(s) missing" if missing else "")
            + (f", {len(result.unparsable)} not decodable" if result.unparsable else "")
            + (f", {len(unsafe)} unsafe image path(s) refused" if unsafe else "")
        )
