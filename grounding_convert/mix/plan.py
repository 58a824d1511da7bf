"""``mix --dry-run``: what a recipe would do, from its plan and a look at each source's first partition."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from ..schema import Sample
from . import keys as K
from .recipe import Recipe
from .runner import build

RENDER_PROBE = 2000  # samples of the first partition rendered to learn records per sample


@dataclass
class SourceEstimate:
    name: str
    reader: str
    input: str
    partitions: int
    tasks: tuple[str, ...]
    weight: float
    max_samples: int | None
    samples: int  # estimated samples read
    decontaminated: int  # estimated samples removed
    sampled: int  # estimated samples after weight and cap
    records: int  # estimated records
    exact: bool  # one partition: the figures are counts, not estimates


def dry_run(recipe: Recipe, output: str = "(dry run)") -> dict[str, Any]:
    job, tasks, state, excluded = build(recipe, output)
    estimates = []
    exclusions = K.Exclusions(job.exclusions)
    for number, source in enumerate(job.sources):
        mine = [t for t in tasks if t.source == number]
        reader, writer = source.job.build()
        samples = hits = rendered = records = 0
        wanted = source.job.reader_options.get("split")
        for item in reader.read(mine[0].partition) if mine else ():
            if not isinstance(item, Sample) or (wanted and item.split != wanted):
                continue
            samples += 1
            if exclusions.hit(item) is not None:
                hits += 1
                continue
            if rendered < RENDER_PROBE:
                rendered += 1
                with contextlib.suppress(Exception):  # a record the real run rejects makes no records
                    records += sum(len(r) for _, r in writer.render_tasks(item, source.job.tasks, job.seed))
        scale = len(mine)
        kept = (samples - hits) * scale
        sampled = round(kept * source.weight)
        if source.max_samples is not None:
            sampled = min(sampled, source.max_samples)
        per_sample = records / rendered if rendered else 0.0
        estimates.append(
            SourceEstimate(
                source.name,
                source.job.reader,
                source.job.input,
                len(mine),
                source.job.tasks,
                source.weight,
                source.max_samples,
                samples * scale,
                hits * scale,
                sampled,
                round(sampled * per_sample),
                len(mine) == 1,
            )
        )
    return {"estimates": estimates, "exclusions": excluded["counts"], "buckets": job.buckets, "dedup": recipe.dedup}


def describe(recipe: Recipe, plan: dict[str, Any]) -> list[str]:
    lines = [
        f"recipe {recipe.path}: writer {recipe.writer}, format {recipe.format}, seed {recipe.seed}, "
        f"dedup {plan['dedup']}, {plan['buckets']} shuffle bucket(s)",
        "sources (estimates from each source's first partition × its partitions; '=' marks exact counts):",
    ]
    total = sum(e.records for e in plan["estimates"]) or 1
    for e in plan["estimates"]:
        mark = "=" if e.exact else "~"
        cap = f", max {e.max_samples:,}" if e.max_samples is not None else ""
        lines.append(
            f"  {e.name} ({e.reader}, {e.partitions} partition(s), tasks {','.join(e.tasks)}, "
            f"weight {e.weight:g}{cap}): "
            f"samples {mark}{e.samples:,}, decontaminated {mark}{e.decontaminated:,}, sampled {mark}{e.sampled:,}, "
            f"records ~{e.records:,} ({e.records / total:.1%})  <- {e.input}"
        )
    if plan["exclusions"]:
        lines.append("exclusion sets (image keys derived from the evaluation data):")
        for name, counts in plan["exclusions"].items():
            keys = ", ".join(f"{k[:-5]} {v:,}" for k, v in counts.items() if k.endswith("_keys")) or "no keys"
            lines.append(f"  {name}: {counts['samples']:,} evaluation samples; {keys}")
    else:
        lines.append("exclusion sets: none (evaluation images are NOT kept out)")
    return lines
