"""The dataset card of a mixture: where each share came from and what was taken out on the way."""

from __future__ import annotations

from typing import Any

import yaml

from .. import __version__
from ..engine.tally import AREA_BUCKETS, REGION_BUCKETS, WORD_BUCKETS, Tally
from ..output.card import LOADERS, SOURCES, _example_json, _histogram, _how_to_load


def render_mix_card(manifest: dict[str, Any], tally: Tally) -> str:
    recipe = manifest["recipe"]
    fmt = recipe["format"]
    header: dict[str, Any] = {
        "pretty_name": f"mixture → {recipe['writer']} ({', '.join(s['name'] for s in recipe['sources'])})",
        "tags": ["visual-grounding", "grounding-convert", "mixture", recipe["writer"]],
    }
    if fmt in LOADERS:
        header["configs"] = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    sets = [e["name"] for e in recipe["exclude"]]
    totals = manifest["totals"]
    parts = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip(), "---", ""]
    parts += [
        f"# Mixture → {recipe['writer']}",
        "",
        f"Made by `grounding-convert mix` {__version__}: {len(recipe['sources'])} source(s), writer "
        f"`{recipe['writer']}`, format {fmt}, seed {recipe['seed']}, dedup `{recipe['dedup']}`. "
        f"{totals['records_written']:,} records, shuffled across all sources ({recipe['buckets']} hash buckets).",
        "",
        "## Sources",
        "",
        "| source | reader | weight | max samples | read | rejected | filtered | decontaminated | kept "
        "| dropped by weight | added by weight | sampled | records | capped | deduplicated | written | share |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in manifest["sources"]:
        parts.append(
            f"| {s['name']} | {s['reader']} | {s['weight']:g} | {s['max_samples'] or '—'} | {s['samples_read']:,} "
            f"| {s['samples_rejected']:,} | {sum(s['samples_filtered'].values()):,} "
            f"| {sum(s['samples_decontaminated'].values()):,} | {s['samples_kept']:,} "
            f"| {s['samples_dropped_by_weight']:,} | {s['samples_added_by_weight']:,} | {s['samples_sampled']:,} "
            f"| {s['records_rendered']:,} | {s['records_capped']:,} | {s['records_deduplicated']:,} "
            f"| {s['records_written']:,} | {s['proportion']:.1%} |"
        )
    parts += [
        "",
        "Samples are source samples (one text about one image); records are what the writer made of them "
        "(one per task and region). Weights draw per sample by a hash of (seed, source, sample id); a copy "
        "beyond the first gets the id suffix `/w<k>` and its own template draws.",
        "",
    ]
    if sets:
        parts += [
            "## Evaluation images kept out",
            "",
            "A sample is removed when any of its image keys (`image.keys`: COCO, Flickr and VG ids) belongs to an "
            "evaluation set below; it is counted under the first set it hits.",
            "",
            "| set | reader | splits | evaluation samples | image keys | "
            + " | ".join(f"removed from {s['name']}" for s in manifest["sources"])
            + " |",
            "|---|---|---|---:|---|" + "---:|" * len(manifest["sources"]),
        ]
        for spec in recipe["exclude"]:
            counts = manifest["exclusion_sets"].get(spec["name"], {})
            keys = ", ".join(f"{k[:-5]} {v:,}" for k, v in counts.items() if k.endswith("_keys")) or "none"
            removed = " | ".join(f"{s['samples_decontaminated'].get(spec['name'], 0):,}" for s in manifest["sources"])
            parts.append(
                f"| {spec['name']} | {spec['reader']} | {', '.join(spec['splits']) or 'all'} "
                f"| {counts.get('samples', 0):,} | {keys} | {removed} |"
            )
        parts.append("")
    parts += ["## Where the sources come from", ""]
    for reader in sorted({s["reader"] for s in recipe["sources"]}):
        parts.append(f"- `{reader}`: " + SOURCES.get(reader, f"read with the `{reader}` reader plugin."))
    parts += ["", "## Recipe", "", "```yaml", yaml.safe_dump(recipe, sort_keys=True, allow_unicode=True).strip()]
    parts += ["```", "", "## Distributions (samples)", ""]
    parts += _histogram("Words per text", tally.text_words, WORD_BUCKETS)
    parts += _histogram("Box area / image area", tally.box_area, AREA_BUCKETS)
    parts += _histogram("Regions per sample", tally.regions_per_sample, REGION_BUCKETS)
    parts += ["## Example record per task", ""]
    for task in sorted(tally.examples):
        parts += [f"### {task}", "", "```json", _example_json(tally.examples[task]), "```", ""]
    parts += ["## How to load", "", *_how_to_load(fmt, ["train"]), ""]
    parts += ["## Files", "", "| shard | records | bytes |", "|---|---:|---:|"]
    parts += [f"| `{s['file']}` | {s['records']:,} | {s['bytes']:,} |" for s in manifest["shards"]]
    return "\n".join(parts) + "\n"
