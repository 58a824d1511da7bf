"""``grounding-convert list``: what is installed (plugins are discovered through entry points)."""

from __future__ import annotations

import typer

from ..plugins import get_reader, get_writer, reader_names, writer_names
from ..writers.base import TASKS


def list_command() -> None:
    """Print readers, writers (with their tasks and formats) and the tasks."""
    typer.echo("readers:")
    for name in reader_names():
        cls = get_reader(name)
        typer.echo(f"  {name:<20} {cls.dataset:<20} {describe(cls)}".rstrip())
    typer.echo("writers:")
    for name in writer_names():
        cls = get_writer(name)
        typer.echo(f"  {name:<20} tasks: {', '.join(cls.tasks):<40} formats: {', '.join(cls.formats)}")
    typer.echo("tasks:")
    for task in TASKS:
        typer.echo(f"  {task}")


def describe(cls: type) -> str:
    """The reader's one-line ``description`` (else the first line of its own docstring, not an inherited one)."""
    text = getattr(cls, "description", "") or (cls.__dict__.get("__doc__") or "").strip()
    return text.splitlines()[0] if text else ""
