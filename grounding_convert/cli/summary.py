"""The end-of-run summary: what was read, written, rejected and filtered, per split and task."""

from __future__ import annotations

import typer

from ..engine.runner import RunResult


def print_summary(result: RunResult, output: str) -> None:
    t = result.tally
    echo = typer.echo
    echo("")
    rate = t.read / result.seconds if result.seconds > 0 else 0.0
    echo(
        f"done in {result.seconds:.1f}s: {result.partitions_run} partition(s) run, "
        f"{result.partitions_skipped} already committed, of {result.partitions_total}  ({rate:,.0f} samples/s)"
    )
    tasks = sorted({task for c in t.records.values() for task in c})
    head = f"{'split':<12}{'read':>10}{'written':>10}{'rejected':>10}{'filtered':>10}" + "".join(
        f"{task:>18}" for task in tasks
    )
    echo(head)
    for split in sorted(t.splits):
        c = t.splits[split]
        recs = t.records.get(split, {})
        echo(
            f"{split:<12}{c['read']:>10,}{c['written']:>10,}{c['rejected']:>10,}{c['filtered']:>10,}"
            + "".join(f"{recs.get(task, 0):>18,}" for task in tasks)
        )
    echo(
        f"{'total':<12}{t.read:>10,}{t.written:>10,}{t.rejected:>10,}{t.filtered:>10,}"
        + "".join(f"{sum(r.get(task, 0) for r in t.records.values()):>18,}" for task in tasks)
    )
    for title, counter in (("rejected", t.reject_reasons), ("filtered", t.filter_reasons), ("notes", t.notes)):
        if counter:
            echo(f"{title}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items())))
    if t.rejected:
        echo(f"rejected records and reasons: {output}/rejects/")
    if not t.balanced:
        typer.secho("warning: read != written + rejected + filtered", fg=typer.colors.YELLOW, err=True)
    if result.finalized is not None:
        echo(f"wrote {len(result.finalized.shards)} shard(s), manifest.json and README.md to {output}")
    else:
        echo(f"slice done; when every worker has finished run: grounding-convert finalize {output}")
