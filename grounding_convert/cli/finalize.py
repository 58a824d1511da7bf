"""``grounding-convert finalize``: merge the slices of a cluster run into one finished output."""

from __future__ import annotations

from typing import Annotated

import typer

from ..engine.lock import OutputLock
from ..mix.finalize import finalize_mix, is_mix
from ..output.finalize import finalize, load_state
from ..output.storage import Store
from .common import reported_errors


def finalize_command(
    output: Annotated[str, typer.Argument(help="The output directory all workers wrote into.")],
) -> None:
    """Name the shards -of-NNNNN, merge the workers' counts into manifest.json and the dataset card."""
    with reported_errors():
        store = Store(output)
        if is_mix(store):  # a mixture: shuffle what is left, then name shards (mix/finalize.py)
            with OutputLock(store, command="finalize"):
                manifest = finalize_mix(store)
            typer.echo(f"finalized {output}: {len(manifest['shards'])} shard(s); {manifest['totals']}")
            return
        load_state(store)  # refuses a folder holding no run before the lock would create anything
        with OutputLock(store, command="finalize"):  # not while a convert (or an array slice) still writes
            done = finalize(store)
        t = done.tally
        typer.echo(
            f"finalized {output}: {len(done.shards)} shard(s); read {t.read:,} = written {t.written:,} "
            f"+ rejected {t.rejected:,} + filtered {t.filtered:,}"
        )
