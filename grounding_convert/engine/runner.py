"""``convert`` as a library call: plan, check the output directory, run partitions, finalize.

The CLI is a thin layer over :func:`convert`; tests and other tools call it directly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from tqdm import tqdm

from ..errors import InputFileError, StrictStop, UsageError
from ..output.containers import check_format
from ..output.finalize import Finalized, finalize
from ..output.packing import check_turns
from ..output.shards import PARTS_DIR
from ..output.storage import Store
from ..plugins import detect_reader, get_reader, get_writer
from ..readers.base import Partition, build_options
from ..writers.base import check_tasks
from .job import JOB_FILE, PLAN_FILE, Job, describe_difference, parse_max_rejects
from .local import run_local
from .pipeline import marker_name, run_partition
from .tally import Tally

ENGINES = ("local", "ray")
OWN_ENTRIES = {"data", "_progress", "rejects"}


@dataclass
class RunOptions:
    """How to run a job (does not change the output bytes)."""

    workers: int = 1
    engine: str = "local"
    overwrite: bool = False
    resume: bool = False
    num_workers: int = 1  # SLURM-array style slicing: this process runs every num_workers-th partition
    worker_index: int = 0
    progress: bool = True
    ray_address: str | None = None


@dataclass
class RunResult:
    tally: Tally
    partitions_total: int
    partitions_run: int
    partitions_skipped: int
    seconds: float
    finalized: Finalized | None


def make_job(
    *,
    input: str,
    output: str,
    writer: str,
    reader: str | None = None,
    tasks: list[str] | None = None,
    **kwargs: Any,
) -> Job:
    """Resolve names (detecting the reader when not given) and defaults into a :class:`Job`."""
    reader_name = reader or detect_reader(localize_input(input))
    writer_cls = get_writer(writer)
    get_reader(reader_name)
    chosen = tuple(tasks) if tasks else tuple(getattr(writer_cls, "default_tasks", None) or writer_cls.tasks)
    check_tasks(writer_cls, chosen)
    fmt = kwargs.get("format", "parquet")
    check_format(fmt, writer_cls.formats, writer, kwargs.get("image_root"))
    check_turns(kwargs.get("turns", 1), writer_cls)
    parse_max_rejects(kwargs.get("max_rejects"))
    kwargs["reader_options"] = _typed(get_reader(reader_name).Options, kwargs.get("reader_options") or {}, reader_name)
    kwargs["writer_options"] = _typed(writer_cls.Options, kwargs.get("writer_options") or {}, writer)
    if kwargs.get("turns", 1) > 1 and kwargs["writer_options"].get("layout", "native") != "native":
        raise UsageError("--turns packs the native conversation layout; leave it out with --layout")
    if fmt == "tsv" and kwargs["writer_options"].get("image_prefix"):
        raise UsageError("--image-prefix does not apply to --format tsv (its image column holds the image bytes)")
    return Job(input=input, reader=reader_name, writer=writer, output=output, tasks=chosen, **kwargs)


def _typed(options_cls: type, values: dict[str, Any], owner: str) -> dict[str, Any]:
    """Options as their typed values (``"15"`` → ``15``), so the same run always has the same identity."""
    options = build_options(options_cls, values, owner=owner)
    return {key.replace("-", "_"): getattr(options, key.replace("-", "_")) for key in sorted(values)}


def input_fingerprint(job: Job, files: list) -> dict[str, Any]:
    """Sizes of the input files (and a digest of the listing) so --resume notices a changed input."""
    listing = sorted((str(p), p.stat().st_size) for p in files)
    digest = hashlib.sha256("".join(f"{n}\t{s}\n" for n, s in listing).encode()).hexdigest()
    info: dict[str, Any] = {"files": len(listing), "bytes": sum(s for _, s in listing), "listing_sha256": digest}
    if len(listing) <= 50:
        info["listing"] = [{"path": n, "bytes": s} for n, s in listing]
    return info


def convert(job: Job, run: RunOptions | None = None) -> RunResult:
    run = run or RunOptions()
    started = time.perf_counter()
    if run.engine not in ENGINES:
        raise UsageError(f"unknown engine {run.engine!r} (engines: {', '.join(ENGINES)})")
    if not 0 <= run.worker_index < run.num_workers:
        raise UsageError(f"--worker-index must be in 0..{run.num_workers - 1}, not {run.worker_index}")
    reader, _writer = job.build()  # fails early on bad options
    local_input = localize_input(job.input)
    partitions = reader.plan(local_input)
    store = Store(job.output)
    state = {
        "identity": job.identity(),
        "inputs": input_fingerprint(job, reader.input_files(local_input)),
        "plan_sha256": _plan_digest(partitions),
    }
    _prepare_output(store, state, run)
    if run.resume and run.num_workers == 1:
        _remove_temporaries(store)
    plan = {"partitions": [{"index": p.index, "key": p.key, "source": p.source} for p in partitions]}
    store.makedirs("_progress")
    store.write_json_atomic(JOB_FILE, state)
    store.write_json_atomic(PLAN_FILE, plan)

    mine = [p for p in partitions if p.index % run.num_workers == run.worker_index]
    todo = [p for p in mine if not (run.resume or run.num_workers > 1) or not store.exists(marker_name(p.index))]
    skipped = len(mine) - len(todo)
    tally = Tally()
    for p in mine:
        if p not in todo:
            tally.merge(Tally.from_dict(store.read_json(marker_name(p.index))["tally"]))

    bar = tqdm(
        total=len(mine), initial=skipped, unit="part", desc="convert", disable=not run.progress, dynamic_ncols=True
    )
    _, max_share = parse_max_rejects(job.max_rejects)
    try:
        for result in _results(job, todo, run, store, plan):
            tally.merge(Tally.from_dict(result["tally"]))
            bar.update(1)
            bar.set_postfix(samples=tally.written, records=tally.total_records(), rejected=tally.rejected)
            if max_share is not None and tally.read and tally.rejected / tally.read > max_share:
                raise StrictStop(
                    f"--max-rejects {job.max_rejects}: {tally.rejected:,} of {tally.read:,} records rejected "
                    f"so far ({tally.rejected / tally.read:.1%}); see {store.url}/rejects/"
                )
    finally:
        bar.close()
    finalized = None
    if run.num_workers == 1:
        finalized = finalize(store)
        tally = finalized.tally
    return RunResult(tally, len(partitions), len(todo), skipped, time.perf_counter() - started, finalized)


def _results(job: Job, todo: list[Partition], run: RunOptions, store: Store, plan: dict) -> Iterator[dict]:
    if job.limit is not None:
        # --limit takes the first N samples in plan order: run partitions in order, stop when reached,
        # and keep only the partitions that ran in the plan so finalize sees a complete run.
        remaining, ran = job.limit, []
        for partition in todo:
            if remaining <= 0:
                break
            result = run_partition(job, partition, limit=remaining)
            remaining -= result["tally"]["read"]
            ran.append(partition.index)
            yield result
        plan["partitions"] = [
            p for p in plan["partitions"] if p["index"] in ran or store.exists(marker_name(p["index"]))
        ]
        store.write_json_atomic(PLAN_FILE, plan)
        return
    if run.engine == "ray":
        from .ray_engine import run_ray

        yield from run_ray(job, todo, run.workers, run.ray_address)
    else:
        yield from run_local(job, todo, run.workers)


def localize_input(url: str) -> str:
    """A local path for the readers: fsspec URLs (s3://, gs://, memory://, ...) are copied into a cache.

    Readers stream local files; a remote input is fetched once into
    ``$GROUNDING_CONVERT_CACHE`` (default ``~/.cache/grounding_convert/inputs/<hash>``) and reused.
    """
    protocol, path = fsspec.core.split_protocol(url)
    if protocol in (None, "file", "local"):
        return path
    fs = fsspec.filesystem(protocol)
    cache_root = Path(os.environ.get("GROUNDING_CONVERT_CACHE", Path.home() / ".cache" / "grounding_convert"))
    target = cache_root / "inputs" / hashlib.sha256(url.encode()).hexdigest()[:16]
    if not fs.exists(path):
        raise InputFileError(url, "does not exist")
    name = target / Path(path.rstrip("/")).name
    if not name.exists():
        tmp = target.with_suffix(".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        fs.get(path.rstrip("/"), str(tmp / name.name), recursive=fs.isdir(path))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return str(name)


def _remove_temporaries(store: Store) -> None:
    """Hidden ``.*.tmp`` files of partitions a killed run did not finish (they are redone)."""
    for folder in (PARTS_DIR, "data", "rejects", "_progress"):
        for name in store.listdir(folder):
            if name.startswith(".") and name.endswith(".tmp"):
                store.remove(f"{folder}/{name}")


def _plan_digest(partitions: list[Partition]) -> str:
    text = "".join(f"{p.index}\t{p.key}\t{p.source}\t{sorted(p.params.items())!r}\n" for p in partitions)
    return hashlib.sha256(text.encode()).hexdigest()


def _prepare_output(store: Store, state: dict[str, Any], run: RunOptions) -> None:
    if store.is_empty():
        store.makedirs()
        return
    if run.overwrite and run.num_workers == 1:
        store.remove_all()
        store.makedirs()
        return
    if run.resume or run.num_workers > 1:
        if not store.exists(JOB_FILE) and run.num_workers > 1 and set(store.listdir()) <= OWN_ENTRIES:
            return  # another array task has just started the same output
        if not store.exists(JOB_FILE):
            raise UsageError(f"{store.url} is not empty and holds no grounding-convert run; refusing to resume into it")
        old = store.read_json(JOB_FILE)
        if old.get("identity") != state["identity"]:
            raise UsageError(
                f"{store.url} was made with different options; refusing to resume "
                f"({describe_difference(old.get('identity', {}), state['identity'])})"
            )
        if old.get("inputs") != state["inputs"] or old.get("plan_sha256") != state["plan_sha256"]:
            raise UsageError(
                f"the input changed since {store.url} was started (file sizes or listing differ); "
                "use --overwrite to start again"
            )
        return
    raise UsageError(f"output {store.url} is not empty: pass --overwrite to replace it or --resume to continue it")
