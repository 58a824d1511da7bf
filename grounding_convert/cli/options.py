"""Command-line options shared by several commands (declared once, so help texts never drift apart).

Every numeric option goes through :func:`checked`: a typer ``parser`` built from the option's
:mod:`~grounding_convert.option_types` type, so a value that cannot work (``--limit -1``,
``--max-records-per-shard 0``) stops the command before it writes anything, with one line naming the
option, the value and what is accepted.  The Python API checks with the same types and messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from ..option_types import EXAMPLES, LIMIT, MIN_SCORE, SEED, OptionType, detail

Opt = typer.Option


def parser(kind: OptionType) -> Callable[[Any], Any]:
    """A typer parser for ``kind``; the type stays reachable (``.kind``) for tests that walk the commands."""

    def parse(value: Any) -> Any:
        try:
            return kind.parse(value)
        except ValueError:
            raise typer.BadParameter(detail(value, kind)) from None

    parse.kind = kind  # type: ignore[attr-defined]
    return parse


def checked(kind: OptionType, *decls: str, help: str, metavar: str | None = None) -> Any:
    """``typer.Option`` whose value is parsed and range-checked by ``kind`` (help ends with what it accepts)."""
    return Opt(*decls, parser=parser(kind), metavar=metavar, help=f"{help} Accepts {kind.accepted()}.")


FromReader = Annotated[str | None, Opt("--from", "-f", help="Reader; detected from the input layout when left out.")]
Split = Annotated[str | None, Opt(help="Keep only this split (others are counted as filtered).")]
SplitBy = Annotated[str | None, Opt(help="RefCOCO*: unc, google or umd.")]
AnnotationsKind = Annotated[str | None, Opt(help="Visual Genome: regions or objects.")]
TextKind = Annotated[str | None, Opt(help="RefCOCO*: sent (cleaned) or raw.")]
Spans = Annotated[str | None, Opt(help="GRIT: noun-chunks or ref-exps.")]
MinScore = Annotated[float | None, checked(MIN_SCORE, help="GRIT: drop boxes below this confidence.")]
ImageRoot = Annotated[str | None, Opt(help="Folder of the dataset's images (image sizes, OFA embedding).")]
VgImageData = Annotated[str | None, Opt(help="Visual Genome / Visual7W: VG image_data.json (image sizes).")]
ReaderOption = Annotated[list[str] | None, Opt("--reader-option", "-O", help="Any reader option KEY=VALUE.")]
Limit = Annotated[
    int | None, checked(LIMIT, help="Stop after this many input samples (in plan order); 0 only plans.", metavar="N")
]
Seed = Annotated[int, checked(SEED, help="Seed of the template choice (per record id).", metavar="N")]
Examples = Annotated[int, checked(EXAMPLES, help="How many example samples to show.", metavar="N")]


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
