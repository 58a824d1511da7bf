"""``mix`` as a library call: recipe → plan → stage (per source partition) → shuffle (per bucket) → finalize.

Both stages run on the ordinary engines (``engine/local.py``, ``engine/ray_engine.py``) and commit one
marker per unit of work, so ``--resume`` and SLURM-style ``--num-workers/--worker-index`` work as for
``convert``.  With several array tasks, each stages its share; the buckets can only be shuffled once every
partition is staged, so a task that finds others unfinished stops there and ``finalize`` (or a rerun)
shuffles what is left.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from ..engine.checks import checked_run_options
from ..engine.job import JOB_FILE, PLAN_FILE
from ..engine.lock import OutputLock
from ..engine.progress import progress_bar
from ..engine.runner import RunOptions, _prepare_output, input_fingerprint, localize_input, make_job
from ..engine.signals import Interrupted, stop_on_signals
from ..errors import GroundingConvertError
from ..output.ownership import check_separate
from ..output.shards import PARTS_DIR
from ..output.storage import Store
from ..plugins import get_reader
from ..schema import Sample
from . import keys as K
from .recipe import ExcludeSpec, Recipe, RecipeError
from .shuffle import BucketTask, bucket_marker, run_bucket
from .stage import SPILL_DIR, MixJob, MixSource, StageTask, run_stage, stage_marker

EXCLUDE_FILE = "_progress/exclude.json"
AUTO_MAX_BUCKETS = 1024


@dataclass
class MixResult:
    stages_total: int
    stages_run: int
    buckets_run: int
    seconds: float
    finalized: dict[str, Any] | None
    waiting: int = 0  # stage partitions of other workers not committed yet


def _at(recipe: Recipe, line: int, exc: GroundingConvertError) -> RecipeError:
    return RecipeError(f"{recipe.path}:{line}: {exc}")


def source_jobs(recipe: Recipe, output: str) -> list[MixSource]:
    out = []
    for spec in recipe.sources:
        try:
            job = make_job(
                input=spec.input,
                output=output,
                writer=recipe.writer,
                reader=spec.reader,
                tasks=list(spec.tasks),
                format=recipe.format,
                seed=recipe.seed,
                reader_options=dict(spec.options),
                writer_options=dict(recipe.writer_options),
                max_records_per_shard=recipe.max_records_per_shard,
                max_shard_bytes=recipe.max_shard_bytes,
            )
        except GroundingConvertError as exc:
            raise _at(recipe, spec.line, exc) from None
        out.append(MixSource(spec.name, job, spec.weight, spec.max_samples))
    return out


def plan_stages(recipe: Recipe, sources: list[MixSource]) -> tuple[list[StageTask], dict[str, Any]]:
    """Every source's partitions, numbered globally in recipe order, and the inputs' fingerprints."""
    tasks: list[StageTask] = []
    inputs: dict[str, Any] = {}
    for number, (spec, source) in enumerate(zip(recipe.sources, sources, strict=True)):
        reader = source.job.build()[0]
        try:
            local = localize_input(source.job.input)
            partitions = reader.plan(local)
            files = reader.input_files(local)
            check_separate(source.job.input, local, files, source.job.output)  # the mix output is not an input
            inputs[source.name] = input_fingerprint(source.job, files)
        except GroundingConvertError as exc:
            raise _at(recipe, spec.line, exc) from None
        for p in partitions:
            tasks.append(StageTask(len(tasks), number, p))
    return tasks, inputs


def exclusion_keys(recipe: Recipe, spec: ExcludeSpec) -> tuple[frozenset, dict[str, int]]:
    """The image keys of one evaluation set (its samples in ``splits``), derived by reading it."""
    try:
        reader = get_reader(spec.reader).from_mapping(dict(spec.options))
        partitions = reader.plan(localize_input(spec.input))
        found: set[K.ImageKey] = set()
        samples = 0
        for partition in partitions:
            for item in reader.read(partition):
                if isinstance(item, Sample) and (not spec.splits or item.split in spec.splits):
                    samples += 1
                    found.update(K.sample_keys(item))
    except GroundingConvertError as exc:
        raise _at(recipe, spec.line, exc) from None
    if samples == 0:
        raise RecipeError(
            f"{recipe.path}:{spec.line}: exclusion set {spec.name!r} has no samples in splits "
            f"{', '.join(spec.splits) or '(all)'}: a typo in a split name would let evaluation images through"
        )
    counts = {
        "samples": samples,
        **{f"{n}_keys": sum(1 for s, _ in found if s == n) for n in sorted({s for s, _ in found})},
    }
    return frozenset(found), counts


def build(recipe: Recipe, output: str) -> tuple[MixJob, list[StageTask], dict[str, Any], dict[str, Any]]:
    """The job, its stage plan, the state compared by --resume, and the exclusion sets' file content."""
    sources = source_jobs(recipe, output)
    tasks, inputs = plan_stages(recipe, sources)
    sets: dict[str, frozenset] = {}
    counts: dict[str, dict[str, int]] = {}
    for spec in recipe.exclude:
        sets[spec.name], counts[spec.name] = exclusion_keys(recipe, spec)
        reader = get_reader(spec.reader).from_mapping(dict(spec.options))
        local = localize_input(spec.input)
        files = reader.input_files(local)
        check_separate(spec.input, local, files, output)
        inputs[f"exclude:{spec.name}"] = input_fingerprint(None, files)
    buckets = recipe.buckets or max(1, min(len(tasks), AUTO_MAX_BUCKETS))
    job = MixJob(
        output=output,
        seed=recipe.seed,
        format=recipe.format,
        dedup=recipe.dedup != "off",
        buckets=buckets,
        sources=tuple(sources),
        exclusions=sets,
        max_records_per_shard=recipe.max_records_per_shard,
        max_shard_bytes=recipe.max_shard_bytes,
    )
    excluded = {"sets": K.Exclusions(sets).to_dict(), "counts": counts}
    identity = {**recipe.identity(), "buckets": buckets}
    identity["source_jobs"] = [s.job.identity() for s in sources]
    plan_text = "".join(f"{t.index}\t{t.source}\t{t.partition.key}\t{t.partition.source}\n" for t in tasks)
    state = {
        "kind": "mix",
        "identity": identity,
        "inputs": inputs,
        "plan_sha256": hashlib.sha256(plan_text.encode()).hexdigest(),
        "exclude_sha256": hashlib.sha256(repr(sorted(excluded["sets"].items())).encode()).hexdigest(),
    }
    return job, tasks, state, excluded


def run_mix(recipe: Recipe, output: str, run: RunOptions | None = None) -> MixResult:
    run = checked_run_options(run or RunOptions())  # the same checks and messages as convert
    started = time.perf_counter()
    job, tasks, state, excluded = build(recipe, output)
    store = Store(output)
    lock = OutputLock(store, run.num_workers, run.worker_index)
    lock.probe()  # a live run names itself before any other refusal
    _prepare_output(store, state, run, act=False)  # every refusal before anything is written
    with lock, stop_on_signals():
        return _run(job, tasks, state, excluded, store, run, started)


def _run(
    job: MixJob, tasks: list[StageTask], state: dict, excluded: dict, store: Store, run: RunOptions, started: float
) -> MixResult:
    """The mixture itself, holding the output's lock, SIGINT/SIGTERM turned into :class:`Interrupted`."""
    _prepare_output(store, state, run, act=True)
    if run.resume and run.num_workers == 1:
        _remove_temporaries(store)
    store.makedirs("_progress")
    store.write_json_atomic(JOB_FILE, state)
    store.write_json_atomic(EXCLUDE_FILE, excluded)
    plan = {
        "kind": "mix",
        "stages": [{"index": t.index, "source": t.source, "key": t.partition.key} for t in tasks],
        "buckets": job.buckets,
        "partitions": [],  # not a convert plan: `finalize` dispatches on "kind"
    }
    store.write_json_atomic(PLAN_FILE, plan)
    skip_done = run.resume or run.num_workers > 1
    mine = [t for t in tasks if t.index % run.num_workers == run.worker_index]
    todo = [t for t in mine if not (skip_done and store.exists(stage_marker(t.index)))]
    _drive(job, todo, run, run_stage, "stage", len(mine))
    missing = [t.index for t in tasks if not store.exists(stage_marker(t.index))]
    buckets_run = 0
    if not missing:
        bucket_tasks = bucket_plan(store, job, len(tasks))
        mine_b = [b for b in bucket_tasks if b.index % run.num_workers == run.worker_index]
        todo_b = [b for b in mine_b if not (skip_done and store.exists(bucket_marker(b.index)))]
        _drive(job, todo_b, run, run_bucket, "shuffle", len(mine_b))
        buckets_run = len(todo_b)
    finalized = None
    if run.num_workers == 1:
        from .finalize import finalize_mix

        finalized = finalize_mix(store)
    return MixResult(len(tasks), len(todo), buckets_run, time.perf_counter() - started, finalized, len(missing))


def _drive(job: MixJob, todo: list, run: RunOptions, fn: Callable, desc: str, total: int) -> None:
    bar = progress_bar(total, total - len(todo), run.progress, desc=desc)
    committed = total - len(todo)
    try:
        with closing(_results(job, todo, run, fn)) as results:  # closing stops the workers
            for _ in results:
                committed += 1
                bar.update(1)
    except Interrupted as exc:
        exc.message = f"interrupted: {committed} of {total} {desc} partitions committed; rerun with --resume to finish"
        raise
    finally:
        bar.close()


def _results(job: MixJob, todo: list, run: RunOptions, fn: Callable) -> Iterator[dict]:
    if run.engine == "ray":
        from ..engine.ray_engine import run_ray

        yield from run_ray(job, todo, run.workers, run.ray_address, fn=fn)
    else:
        from ..engine.local import run_local

        yield from run_local(job, todo, run.workers, fn=fn)


def bucket_plan(store: Store, job: MixJob, stages: int) -> list[BucketTask]:
    """Which batches of which spill file belong to each bucket, and the max_samples caps per source."""
    pieces: list[list[tuple[int, tuple[int, ...]]]] = [[] for _ in range(job.buckets)]
    hist = [[0] * K.CAP_BINS for _ in job.sources]
    for index in range(stages):
        marker = store.read_json(stage_marker(index))
        by_bucket: dict[int, list[int]] = {}
        for position, bucket in enumerate(marker["batches"]):
            by_bucket.setdefault(bucket, []).append(position)
        for bucket, positions in sorted(by_bucket.items()):
            pieces[bucket].append((index, tuple(positions)))
        if marker.get("hist"):
            row = hist[marker["source"]]
            for i, count in enumerate(marker["hist"]):
                row[i] += count
    caps = tuple(_cap(source.max_samples, hist[n]) for n, source in enumerate(job.sources))
    return [BucketTask(b, tuple(pieces[b]), caps) for b in range(job.buckets)]


def _cap(max_samples: int | None, hist: list[int]) -> int:
    """The number of hash bins whose samples fit under ``max_samples`` (all bins when there is no cap)."""
    if max_samples is None:
        return K.CAP_BINS
    total = 0
    for i, count in enumerate(hist):
        if total + count > max_samples:
            return i
        total += count
    return K.CAP_BINS


def _remove_temporaries(store: Store) -> None:
    """Hidden ``.*.tmp`` files a killed run left (their partitions and buckets are redone)."""
    for folder in (PARTS_DIR, "data", "rejects", "_progress", SPILL_DIR):
        for name in store.listdir(folder):
            if name.startswith(".") and name.endswith(".tmp"):
                store.remove(f"{folder}/{name}")
