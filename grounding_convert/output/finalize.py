"""Finalize an output directory: name shards ``{split}-{i:05d}-of-{n:05d}`` (``{group}-{split}-…`` for a
container's file groups, e.g. OFA's ``rec-train-00000-of-00001.tsv``), write manifest and card.

Runs at the end of a normal ``convert``, or on its own (``grounding-convert finalize OUT``) after the
slices of a SLURM array have all committed their partitions.  It is idempotent: it can be run again
after an interruption and ends in the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..engine.job import JOB_FILE, PLAN_FILE
from ..engine.pipeline import marker_name
from ..engine.tally import Tally
from ..errors import UsageError
from .card import render_card
from .shards import EXTENSIONS, PARTS_DIR, shard_stem
from .storage import Store

MANIFEST = "manifest.json"


@dataclass
class Finalized:
    tally: Tally
    shards: list[dict[str, Any]]
    job: dict[str, Any]


def load_state(store: Store) -> tuple[dict[str, Any], dict[str, Any]]:
    if not store.exists(JOB_FILE) or not store.exists(PLAN_FILE):
        raise UsageError(f"{store.url} holds no grounding-convert run (no {JOB_FILE}); run convert first")
    return store.read_json(JOB_FILE), store.read_json(PLAN_FILE)


def companion_files(job: dict[str, Any], shards: list[dict[str, Any]]) -> dict[str, bytes]:
    """Files a writer or layout puts beside the shards (InternVL's meta JSON, LLaMA-Factory's
    ``dataset_info.json``, ODVG's ``label_map.json``), named by the writer, written before the manifest."""
    from ..plugins import get_writer

    writer = get_writer(job["writer"]).from_mapping(dict(job.get("writer_options", {})))
    hook = getattr(writer, "companion_files", None)
    return dict(hook(shards, job)) if hook is not None else {}


def finalize(store: Store) -> Finalized:
    job, plan = load_state(store)
    indices = [p["index"] for p in plan["partitions"]]
    missing = [i for i in indices if not store.exists(marker_name(i))]
    if missing:
        raise UsageError(
            f"{len(missing)} of {len(indices)} partitions are not committed yet (first: {missing[0]}); "
            "run the remaining workers (or convert --resume) before finalize"
        )
    results = [store.read_json(marker_name(i)) for i in indices]
    tally = Tally()
    by_stem: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        tally.merge(Tally.from_dict(result["tally"]))
        for shard in result["shards"]:
            by_stem.setdefault(shard_stem(shard["split"], shard.get("group", "")), []).append(shard)
    ext = EXTENSIONS[job["identity"]["format"]]
    final_shards: list[dict[str, Any]] = []
    for stem in sorted(by_stem):
        final_shards += name_shards(store, stem, by_stem[stem], ext, "a committed partition")
    store.remove(PARTS_DIR)  # empty now: every shard has its final name
    manifest = {
        "tool": "grounding-convert",
        "version": __version__,
        "job": job["identity"],
        "inputs": job.get("inputs", {}),
        "partitions": len(indices),
        "shards": final_shards,
        "rejects": [r["rejects"] for r in results if r.get("rejects")],
        "counts": {k: v for k, v in tally.to_dict().items() if k != "examples"},
        "balanced": tally.balanced,
    }
    for name, data in companion_files(job["identity"], final_shards).items():
        store.write_bytes_atomic(name, data)
    store.write_json_atomic(MANIFEST, manifest)
    store.write_bytes_atomic("README.md", render_card(job, tally, final_shards).encode())
    return Finalized(tally=tally, shards=final_shards, job=job)


def name_shards(store: Store, stem: str, shards: list[dict[str, Any]], ext: str, owner: str) -> list[dict[str, Any]]:
    """Give finished shards their HF names ``data/{stem}-i-of-n.ext`` (idempotent: a rerun after a crash
    finds them already renamed); a shard neither here nor renamed is an error naming its ``owner``."""
    named = []
    for i, shard in enumerate(shards):
        target = f"data/{stem}-{i:05d}-of-{len(shards):05d}.{ext}"
        if store.exists(shard["file"]):
            store.rename(shard["file"], target)
        elif not store.exists(target):
            raise UsageError(f"shard {shard['file']} of {owner} is missing from {store.url}")
        named.append({**shard, "file": target})
    return named
