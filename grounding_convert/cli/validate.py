"""``grounding-convert validate``: every record well formed, every box decodes back to its source."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import EXIT_FAILED
from ..tools.validate import validate
from .common import parse_pairs, reported_errors


def validate_command(
    output: Annotated[str, typer.Argument(help="An output directory written by convert.")],
    source: Annotated[str | None, typer.Option(help="The dataset it was made from: compare every decoded box.")] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Reader of --source (default: the one in the manifest).")
    ] = None,
    reader_option: Annotated[
        list[str] | None, typer.Option("--reader-option", "-O", help="Reader option KEY=VALUE.")
    ] = None,
) -> None:
    """Check schema and box tokens of every record; with --source, decoded boxes within one step."""
    with reported_errors():
        report = validate(output, source, from_, parse_pairs(reader_option, "-O") or None)
        for message in report.messages:
            typer.secho(f"  {message}", fg=typer.colors.RED, err=True)
        typer.echo(f"checked {report.records:,} records in {report.shards} shard(s)")
        if source is not None:
            typer.echo(
                f"compared {report.boxes_checked:,} boxes with {source}: worst error {report.worst_pixels:.3f}px "
                f"= {report.worst_steps:.3f} quantization steps"
                + (f" ({report.worst_record})" if report.worst_record else "")  # none when every box is exact
            )
        if report.ok:
            typer.secho("valid", fg=typer.colors.GREEN)
        else:
            typer.secho(f"INVALID: {report.failures:,} problem(s)", fg=typer.colors.RED)
            raise typer.Exit(EXIT_FAILED)
