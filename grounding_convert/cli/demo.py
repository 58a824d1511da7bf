"""``grounding-convert demo``: the main job on the bundled sample, with every installed writer.

The sample is ten real Flickr30K Entities annotation files shipped inside the package, so a fresh
install can show, without downloading anything, what each model's records look like and that every
box decodes back to its source (``validate --source``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import orjson
import typer

from ..engine.runner import RunOptions, convert, make_job
from ..option_types import Choice
from ..plugins import get_writer, writer_names
from ..synth import generate
from ..tools.preview import render_preview
from ..tools.validate import validate
from .common import reported_errors
from .options import checked


def sample_data_dir() -> Path:
    return Path(str(resources.files("grounding_convert").joinpath("sample_data", "flickr30k_entities")))


def demo_command(
    output: Annotated[Path, typer.Option(help="Folder for one output per writer.")] = Path("grounding-convert-demo"),
    input: Annotated[str | None, typer.Option(help="Flickr30K Entities folder (default: the bundled sample).")] = None,
    format: Annotated[
        str, checked(Choice(("parquet", "jsonl", "json")), help="Shard format.", metavar="FORMAT")
    ] = "jsonl",
    overwrite: Annotated[bool, typer.Option(help="Replace earlier demo outputs.")] = True,
) -> None:
    """Convert the bundled Flickr30K Entities sample with every writer, validate, and show a record of each."""
    with reported_errors():
        source = input or str(sample_data_dir())
        typer.echo(f"input: {source}")
        for name in writer_names():
            target = output / name
            options = dict(getattr(get_writer(name), "demo_options", {}))  # qwen2.5-vl needs a resize profile
            job = make_job(
                input=source,
                output=str(target),
                writer=name,
                reader="flickr30k-entities",
                format=format,
                writer_options=options,
            )
            result = convert(job, RunOptions(overwrite=overwrite, progress=False))
            t = result.tally
            report = validate(str(target), source, "flickr30k-entities", {})
            per_task = {task: sum(c.get(task, 0) for c in t.records.values()) for task in get_writer(name).tasks}
            typer.secho(f"\n== {name} → {target}", bold=True)
            typer.echo(
                f"samples read {t.read:,}, written {t.written:,}, rejected {t.rejected:,}, filtered {t.filtered:,}; "
                "records " + ", ".join(f"{k} {v:,}" for k, v in per_task.items() if v)
            )
            typer.echo(
                f"validate --source: {report.records:,} records, {report.boxes_checked:,} boxes, worst error "
                f"{report.worst_steps:.2f} steps: " + ("valid" if report.ok else f"INVALID ({report.failures})")
            )
            for task, example in sorted(t.examples.items())[:2]:
                typer.echo(f"{task}: {orjson.dumps(example).decode()[:400]}")
        _preview(output, overwrite)
        typer.echo(f"\nOpen {output}/<writer>/README.md for each dataset card.")


def _preview(output: Path, overwrite: bool) -> None:
    """The real sample ships without images, so draw decoded boxes on a tiny synthetic Flickr set."""
    synth_dir = output / "synth-flickr30k-entities"
    generate("flickr30k-entities", synth_dir, images=6, seed=0)
    target = output / "synth-qwen-vl"
    job = make_job(
        input=str(synth_dir),
        output=str(target),
        writer="qwen-vl",
        reader="flickr30k-entities",
        tasks=["grounded-caption"],
        format="jsonl",
    )
    convert(job, RunOptions(overwrite=overwrite, progress=False))
    images = str(synth_dir / "flickr30k-images")
    for suffix in ("png", "html"):
        result = render_preview(str(target), images, output / f"preview.{suffix}", n=6)
        typer.echo(f"preview of {result.records} decoded records on synthetic images: {result.out_path}")
