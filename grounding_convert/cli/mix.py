"""``grounding-convert mix``: a training mixture from a recipe (see grounding_convert/mix/recipe.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..engine.checks import ENGINES
from ..engine.runner import RunOptions
from ..mix.recipe import load_recipe
from ..option_types import NUM_WORKERS, WORKER_INDEX, WORKERS, Choice
from .common import reported_errors
from .options import checked

Opt = typer.Option


def mix_command(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML: writer, sources (weights), exclude, dedup.")],
    output: Annotated[str | None, Opt("--output", "-o", help="Output directory (or fsspec URL).")] = None,
    dry_run: Annotated[bool, Opt(help="Print the plan (sources, estimated counts, exclusion sets) and stop.")] = False,
    workers: Annotated[
        int, checked(WORKERS, help="Processes (local engine) or CPUs (ray); auto = os CPUs available.", metavar="N")
    ] = 1,
    overwrite: Annotated[bool, Opt(help="Replace a non-empty output directory.")] = False,
    resume: Annotated[bool, Opt(help="Skip partitions and buckets an earlier run with the same recipe did.")] = False,
    engine: Annotated[str, checked(Choice(ENGINES), help="local (process pool) or ray.", metavar="ENGINE")] = "local",
    num_workers: Annotated[
        int, checked(NUM_WORKERS, help="Cluster slicing: total number of array tasks.", metavar="N")
    ] = 1,
    worker_index: Annotated[
        int, checked(WORKER_INDEX, help="Cluster slicing: this task's index, below --num-workers.", metavar="I")
    ] = 0,
    quiet: Annotated[bool, Opt(help="No progress bar.")] = False,
) -> None:
    """Mix several datasets into one shuffled training set, keeping evaluation images out."""
    with reported_errors():
        parsed = load_recipe(recipe)
        if dry_run:
            from ..mix.plan import describe
            from ..mix.plan import dry_run as plan

            for line in describe(parsed, plan(parsed, output or "(dry run)")):
                typer.echo(line)
            return
        if output is None:
            from ..errors import UsageError

            raise UsageError("mix needs --output (or --dry-run)")
        from ..mix.runner import run_mix

        result = run_mix(
            parsed,
            output,
            RunOptions(
                workers=workers,
                engine=engine,
                overwrite=overwrite,
                resume=resume,
                num_workers=num_workers,
                worker_index=worker_index,
                progress=not quiet,
            ),
        )
        typer.echo(
            f"done in {result.seconds:.1f}s: {result.stages_run} of {result.stages_total} source partition(s) staged, "
            f"{result.buckets_run} bucket(s) shuffled"
        )
        if result.finalized is None:
            if result.waiting:
                typer.echo(
                    f"{result.waiting} partition(s) of other workers are not staged yet; run finalize when all are"
                )
            else:
                typer.echo(f"this worker's share is done; run `grounding-convert finalize {output}` when all are")
            return
        for s in result.finalized["sources"]:
            decon = sum(s["samples_decontaminated"].values())
            typer.echo(
                f"  {s['name']:<20} read {s['samples_read']:>10,}  decontaminated {decon:>8,}  "
                f"sampled {s['samples_sampled']:>10,}  deduplicated {s['records_deduplicated']:>8,}  "
                f"written {s['records_written']:>10,}  ({s['proportion']:.1%})"
            )
        typer.echo(f"wrote {result.finalized['totals']['records_written']:,} records to {output}")
