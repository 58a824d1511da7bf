"""``grounding-convert export``: repackage a finished output for a trainer that wants its own folder layout."""

from __future__ import annotations

from typing import Annotated

import typer

from ..tools.export import LAYOUTS, export
from .common import reported_errors


def export_command(
    output: Annotated[str, typer.Argument(help="A finished grounding-convert output (convert --to cogvlm).")],
    layout: Annotated[str, typer.Option(help=f"Target layout: {', '.join(LAYOUTS)}.")],
    dest: Annotated[str, typer.Option(help="Folder to create (empty, or an earlier export by this tool).")],
    image_root: Annotated[
        str | None, typer.Option(help="Folder of the images (default: the --image-root of the conversion).")
    ] = None,
    copy: Annotated[bool, typer.Option(help="Copy the images instead of symlinking them.")] = False,
) -> None:
    """Regroup records per image: CogVLM2's images/ + labels_en/<stem>.json with all rounds of each image."""
    with reported_errors():
        result = export(output, layout, dest, image_root=image_root, copy=copy)
        typer.echo(
            f"exported {result.images:,} image(s) with {result.rounds:,} round(s) from {result.records:,} record(s) "
            f"to {result.dest}: " + ", ".join(f"{split} {n:,}" for split, n in sorted(result.splits.items()))
        )
        if result.skipped:
            typer.echo("skipped images: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.skipped.items())))
