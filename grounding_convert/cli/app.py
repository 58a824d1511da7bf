"""The ``grounding-convert`` command: one typer app, one module per command."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from .catalog import list_command
from .common import State
from .convert import convert_command
from .demo import demo_command
from .export import export_command
from .finalize import finalize_command
from .group import OneLineErrors
from .inspect import inspect_command
from .mix import mix_command
from .preview import preview_command
from .synth import synth_command
from .validate import validate_command

app = typer.Typer(
    name="grounding-convert",
    cls=OneLineErrors,
    help="Turn visual-grounding datasets (Visual Genome, RefCOCO/+/g, Visual7W, Flickr30K Entities, GRIT) "
    "into OFA, KOSMOS-2, Qwen-VL and CogVLM training records, with boxes spelled exactly as each model does.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"grounding-convert {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option(help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    State.debug = debug


app.command("list", help="List installed readers, writers and tasks.")(list_command)
app.command("convert")(convert_command)
app.command("validate")(validate_command)
app.command("finalize")(finalize_command)
app.command("synth")(synth_command)
app.command("demo")(demo_command)
app.command("preview")(preview_command)
app.command("inspect")(inspect_command)
app.command("export")(export_command)
app.command("mix")(mix_command)


def main() -> None:
    app()
