"""Command-line options shared by several commands (declared once, so help texts never drift apart)."""

from __future__ import annotations

from typing import Annotated

import typer

Opt = typer.Option

FromReader = Annotated[str | None, Opt("--from", "-f", help="Reader; detected from the input layout when left out.")]
Split = Annotated[str | None, Opt(help="Keep only this split (others are counted as filtered).")]
SplitBy = Annotated[str | None, Opt(help="RefCOCO*: unc, google or umd.")]
AnnotationsKind = Annotated[str | None, Opt(help="Visual Genome: regions or objects.")]
TextKind = Annotated[str | None, Opt(help="RefCOCO*: sent (cleaned) or raw.")]
Spans = Annotated[str | None, Opt(help="GRIT: noun-chunks or ref-exps.")]
MinScore = Annotated[float | None, Opt(help="GRIT: drop boxes below this confidence.")]
ImageRoot = Annotated[str | None, Opt(help="Folder of the dataset's images (image sizes, OFA embedding).")]
VgImageData = Annotated[str | None, Opt(help="Visual Genome / Visual7W: VG image_data.json (image sizes).")]
ReaderOption = Annotated[list[str] | None, Opt("--reader-option", "-O", help="Any reader option KEY=VALUE.")]
Limit = Annotated[int | None, Opt(help="Stop after this many input samples (in plan order).")]


def reader_flags(
    split: str | None,
    split_by: str | None,
    annotations: str | None,
    text: str | None,
    spans: str | None,
    min_score: float | None,
    image_root: str | None,
    vg_image_data: str | None,
) -> dict[str, object]:
    """The named dataset flags as reader option names (None for flags not given)."""
    return {
        "split": split,
        "split_by": split_by,
        "annotations": annotations,
        "text": text,
        "spans": spans,
        "min_score": min_score,
        "image_root": image_root,
        "vg_image_data": vg_image_data,
    }
