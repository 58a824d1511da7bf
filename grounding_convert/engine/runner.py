"""``convert`` as a library call: plan, check the output directory, run partitions, finalize.

The CLI is a thin layer over :func:`convert`; tests and other tools call it directly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from ..errors import InputFileError, StrictStop, UsageError
from ..images import POLICIES as SIZE_POLICIES
from ..option_types import Choice, check
from ..output.containers import check_format
from ..output.finalize import Finalized, finalize
from ..output.ownership import check_output_is_folder, check_replaceable, check_separate, is_lock_name, remove_own
from ..output.packing import check_turns
from ..output.shards import PARTS_DIR
from ..output.storage import Store
from ..plugins import detect_reader, get_reader, get_writer
from ..readers.base import Partition, build_options
from ..safe_paths import is_remote
from ..writers.base import check_tasks
from .checks import checked_job_options, checked_run_options
from .job import JOB_FILE, PLAN_FILE, Job, describe_difference, parse_max_rejects
from .local import run_local, warm_pool
from .lock import OutputLock
from .pipeline import marker_name, run_partition
from .progress import progress_bar
from .signals import Interrupted, stop_on_signals
from .tally import Tally

OWN_ENTRIES = {"data", "_progress", "rejects"}


@dataclass
class RunOptions:
    """How to run a job (does not change the output bytes)."""

    workers: int | str = 1  # or "auto": the CPUs available (resolved by checked_run_options)
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
    kwargs = checked_job_options(kwargs)
    check_format(fmt, writer_cls.formats, writer, kwargs.get("image_root"))
    check_turns(kwargs.get("turns", 1), writer_cls)
    check_image_options(kwargs.get("image_root"), kwargs.get("size_mismatch", "reject"))
    kwargs["reader_options"] = _typed(
        get_reader(reader_name).Options, kwargs.get("reader_options") or {}, f"reader {reader_name!r}"
    )
    kwargs["writer_options"] = _typed(writer_cls.Options, kwargs.get("writer_options") or {}, f"writer {writer!r}")
    if kwargs.get("turns", 1) > 1 and kwargs["writer_options"].get("layout", "native") != "native":
        raise UsageError("--turns packs the native conversation layout; leave it out with --layout")
    if fmt == "tsv" and kwargs["writer_options"].get("image_prefix"):
        raise UsageError("--image-prefix does not apply to --format tsv (its image column holds the image bytes)")
    return Job(input=input, reader=reader_name, writer=writer, output=output, tasks=chosen, **kwargs)


def check_image_options(image_root: str | None, size_mismatch: str) -> None:
    """``--size-mismatch`` is one of the policies; a local ``--image-root`` is an existing folder."""
    check("--size-mismatch", Choice(SIZE_POLICIES), size_mismatch)
    if image_root is not None and not is_remote(image_root) and not os.path.isdir(image_root):
        raise InputFileError(image_root, "folder not found", "--image-root: the folder of the dataset's images")


def _typed(options_cls: type, values: dict[str, Any], owner: str) -> dict[str, Any]:
    """Options as their typed values (``"15"`` → ``15``), so the same run always has the same identity."""
    options = build_options(options_cls, values, owner=owner)
    return {key.replace("-", "_"): getattr(options, key.replace("-", "_")) for key in sorted(values)}


def input_fingerprint(job: Job, files: list) -> dict[str, Any]:
    """Sizes of the input files (and a digest of the listing) so --resume notices a changed input."""
    listing = sorted((name, os.stat(name).st_size) for name in map(os.fspath, files))
    digest = hashlib.sha256("".join(f"{n}\t{s}\n" for n, s in listing).encode()).hexdigest()
    info: dict[str, Any] = {"files": len(listing), "bytes": sum(s for _, s in listing), "listing_sha256": digest}
    if len(listing) <= 50:
        info["listing"] = [{"path": n, "bytes": s} for n, s in listing]
    return info


def convert(job: Job, run: RunOptions | None = None) -> RunResult:
    run = checked_run_options(run or RunOptions())
    started = time.perf_counter()
    reader, _writer = job.build()  # fails early on bad options
    local_pool = run.engine != "ray" and job.limit is None
    with warm_pool(run.workers if local_pool else 1) as pool:  # the workers start up while the input is planned
        return _planned(job, run, reader, pool, started)


def _planned(job: Job, run: RunOptions, reader: Any, pool: Any, started: float) -> RunResult:
    """Plan, fingerprint the input, refuse what must be refused, then run under the output's lock."""
    local_input = localize_input(job.input)
    partitions = reader.plan(local_input)
    input_files = reader.input_files(local_input)
    check_separate(job.input, local_input, input_files, job.output)
    store = Store(job.output)
    state = {
        "identity": job.identity(),
        "inputs": input_fingerprint(job, input_files),
        "plan_sha256": _plan_digest(partitions),
    }
    lock = OutputLock(store, run.num_workers, run.worker_index)
    lock.probe()  # a live run names itself before any other refusal
    _prepare_output(store, state, run, act=False)  # every refusal before anything is written
    with lock, stop_on_signals():
        return _convert(job, run, store, state, partitions, started, pool)


def _convert(
    job: Job,
    run: RunOptions,
    store: Store,
    state: dict[str, Any],
    partitions: list[Partition],
    started: float,
    pool: Any = None,
) -> RunResult:
    """The run itself, holding the output's lock, SIGINT/SIGTERM turned into :class:`Interrupted`."""
    _prepare_output(store, state, run, act=True)
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

    bar = progress_bar(len(mine), skipped, run.progress)
    _, max_share = parse_max_rejects(job.max_rejects)
    try:
        with closing(_results(job, todo, run, store, plan, pool)) as results:  # closing stops the workers
            for result in results:
                tally.merge(Tally.from_dict(result["tally"]))
                postfix = {"samples": tally.written, "records": tally.total_records(), "rejected": tally.rejected}
                bar.set_postfix(postfix, refresh=False)  # shown by update, at most every mininterval
                bar.update(1)
                if max_share is not None and tally.read and tally.rejected / tally.read > max_share:
                    raise StrictStop(
                        f"--max-rejects {job.max_rejects}: {tally.rejected:,} of {tally.read:,} records rejected "
                        f"so far ({tally.rejected / tally.read:.1%}); see {store.url}/rejects/"
                    )
    except Interrupted as exc:  # the workers are stopped (closing above): count what is committed
        bar.close()
        committed = sum(1 for p in mine if store.exists(marker_name(p.index)))
        exc.message = f"interrupted: {committed} of {len(mine)} partitions committed; rerun with --resume to finish"
        raise
    finally:
        bar.close()
    finalized = None
    if run.num_workers == 1:
        finalized = finalize(store)
        tally = finalized.tally
    return RunResult(tally, len(partitions), len(todo), skipped, time.perf_counter() - started, finalized)


def _results(
    job: Job, todo: list[Partition], run: RunOptions, store: Store, plan: dict, pool: Any = None
) -> Iterator[dict]:
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
        yield from run_local(job, todo, run.workers, pool=pool)


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


def _prepare_output(store: Store, state: dict[str, Any], run: RunOptions, act: bool) -> None:
    """Refuse what must not happen; with ``act``, also start the folder (deleting a previous run for
    --overwrite).  Called once before the lock is taken (nothing is written) and once holding it."""
    check_output_is_folder(store)
    entries = [name for name in store.listdir() if not is_lock_name(name)]
    if not entries:
        if act:
            store.makedirs()
        return
    if run.overwrite and run.num_workers == 1:
        check_replaceable(store)  # only a previous run of this tool, nothing of the user's
        if act:
            remove_own(store)
            store.makedirs()
        return
    if run.resume or run.num_workers > 1:  # never deletes anything
        if not store.exists(JOB_FILE) and run.num_workers > 1 and set(entries) <= OWN_ENTRIES:
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
