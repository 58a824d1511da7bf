"""Finalize a mixture: shuffle buckets not done yet, name the shards, write manifest and card.

Called at the end of ``mix`` or by ``grounding-convert finalize OUT`` after SLURM array tasks (the command
sees ``"kind": "mix"`` in the job file).  Idempotent, like ``output/finalize.py``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .. import __version__
from ..engine.job import JOB_FILE, PLAN_FILE, Job
from ..engine.tally import Tally
from ..errors import UsageError
from ..output.finalize import name_shards
from ..output.shards import EXTENSIONS, PARTS_DIR
from ..output.storage import Store
from .card import render_mix_card
from .shuffle import SPLIT, bucket_marker, run_bucket
from .stage import SPILL_DIR, MixJob, MixSource, stage_marker

MANIFEST = "manifest.json"
EXCLUDE_FILE = "_progress/exclude.json"


def is_mix(store: Store) -> bool:
    return store.exists(JOB_FILE) and store.read_json(JOB_FILE).get("kind") == "mix"


def job_from_state(state: dict[str, Any], output: str) -> MixJob:
    """The job again, from the job file (enough to shuffle buckets; exclusions were applied in the stage)."""
    identity = state["identity"]
    sources = []
    for spec, job_identity in zip(identity["sources"], identity["source_jobs"], strict=True):
        fields = dict(job_identity)
        fields["tasks"] = tuple(fields["tasks"])
        sources.append(MixSource(spec["name"], Job(output=output, **fields), spec["weight"], spec["max_samples"]))
    return MixJob(
        output=output,
        seed=identity["seed"],
        format=identity["format"],
        dedup=identity["dedup"] != "off",
        buckets=identity["buckets"],
        sources=tuple(sources),
        max_records_per_shard=identity["max_records_per_shard"],
        max_shard_bytes=identity["max_shard_bytes"],
    )


def finalize_mix(store: Store) -> dict[str, Any]:
    from .runner import bucket_plan

    state, plan = store.read_json(JOB_FILE), store.read_json(PLAN_FILE)
    stages = len(plan["stages"])
    missing = [i for i in range(stages) if not store.exists(stage_marker(i))]
    if missing:
        raise UsageError(
            f"{len(missing)} of {stages} source partitions are not staged yet (first: {missing[0]}); "
            "run the remaining workers (or mix --resume) before finalize"
        )
    job = job_from_state(state, store.url)
    buckets = plan["buckets"]
    if any(not store.exists(bucket_marker(b)) for b in range(buckets)):
        for task in bucket_plan(store, job, stages):
            if not store.exists(bucket_marker(task.index)):
                run_bucket(job, task)
    stage_results = [store.read_json(stage_marker(i)) for i in range(stages)]
    bucket_results = [store.read_json(bucket_marker(b)) for b in range(buckets)]
    ext = EXTENSIONS[state["identity"]["format"]]
    parts = [shard for result in bucket_results for shard in result["shards"]]
    shards = name_shards(store, SPLIT, parts, ext, "a shuffled bucket")
    store.remove(PARTS_DIR)
    store.remove(SPILL_DIR)  # the tool's own intermediate copy of every record
    report = mix_report(state, stage_results, bucket_results)
    excluded = store.read_json(EXCLUDE_FILE) if store.exists(EXCLUDE_FILE) else {"counts": {}}
    manifest = {
        "tool": "grounding-convert",
        "version": __version__,
        "kind": "mix",
        "recipe": state["identity"],
        "inputs": state.get("inputs", {}),
        "exclusion_sets": excluded.get("counts", {}),
        "sources": report["sources"],
        "totals": report["totals"],
        "shards": shards,
        "rejects": [r["rejects"] for r in stage_results if r.get("rejects")],
    }
    store.write_json_atomic(MANIFEST, manifest)
    store.write_bytes_atomic("README.md", render_mix_card(manifest, report["tally"]).encode())
    return manifest


def mix_report(state: dict[str, Any], stages: list[dict], buckets: list[dict]) -> dict[str, Any]:
    """Per source: read, kept, sampled, removed by decontamination (per set) and by dedup, written, share."""
    identity = state["identity"]
    names = [s["name"] for s in identity["sources"]]
    sets = [e["name"] for e in identity["exclude"]]
    tallies = [Tally() for _ in names]
    records = Counter()
    for stage in stages:
        tallies[stage["source"]].merge(Tally.from_dict(stage["tally"]))
        records[stage["source"]] += stage["records"]
    after = [Counter() for _ in names]
    for bucket in buckets:
        for source, counts in bucket["sources"].items():
            after[int(source)].update(counts)
    total_written = sum(a["written"] for a in after) or 1
    sources = []
    whole = Tally()
    for n, name in enumerate(names):
        t, spec = tallies[n], identity["sources"][n]
        whole.merge(t)
        decontaminated = {s: t.filter_reasons.get(f"decontaminated:{s}", 0) for s in sets}
        other_filtered = {
            k: v for k, v in t.filter_reasons.items() if not k.startswith("decontaminated:") and k != "weight"
        }
        sources.append(
            {
                "name": name,
                "reader": spec["reader"],
                "weight": spec["weight"],
                "max_samples": spec["max_samples"],
                "samples_read": t.read,
                "samples_rejected": t.rejected,
                "samples_filtered": dict(sorted(other_filtered.items())),
                "samples_decontaminated": decontaminated,
                "samples_kept": t.read - t.rejected - sum(other_filtered.values()) - sum(decontaminated.values()),
                "samples_dropped_by_weight": t.filter_reasons.get("weight", 0),
                "samples_added_by_weight": t.notes.get("weight-copies", 0),
                "samples_sampled": t.written,
                "records_rendered": records[n],
                "records_capped": after[n]["capped"],
                "records_deduplicated": after[n]["deduplicated"],
                "records_written": after[n]["written"],
                "proportion": round(after[n]["written"] / total_written, 6),
            }
        )
    totals = {
        key: sum(s[key] for s in sources)
        for key in ("samples_read", "records_rendered", "records_capped", "records_deduplicated", "records_written")
    }
    return {"sources": sources, "totals": totals, "tally": whole}
