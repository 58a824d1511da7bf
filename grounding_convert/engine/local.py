"""The default engine: partitions in a process pool (or in this process for one worker).

Results arrive in completion order; that is fine because every partition commits its own files and
``finalize`` orders shards by partition index, so the bytes never depend on the worker count.

When the run stops early (a signal, an error, ``--max-rejects``) the workers are stopped too: SIGTERM
(each drops its unfinished partition's temporary files), SIGKILL after ``GRACE_SECONDS``; then the
temporaries of the partitions that were running are removed here too, in case a worker could not.  Waiting for
running partitions to finish, as ``ProcessPoolExecutor`` does on exit, could take minutes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from typing import Any

from ..errors import WorkerLost
from ..output.storage import Store
from ..readers.base import Partition
from .job import Job
from .pipeline import drop_temporaries, run_partition
from .signals import init_worker, run_in_worker

GRACE_SECONDS = 3.0


def new_pool(workers: int) -> ProcessPoolExecutor:
    """The worker processes (forked on Linux), each set up by :func:`init_worker`."""
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=init_worker, initargs=(os.getpid(),)
    )


@contextmanager
def warm_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """A pool started before the run's serial start (planning, listing and fingerprinting the input), whose
    workers meanwhile pay their one-time lazy imports (:func:`warm_up`) on the other cores; None for one
    worker.  Ended here: at once (as :func:`stop_pool`) if the run stops early or is refused."""
    if workers <= 1:
        yield None
        return
    pool = new_pool(workers)
    warming = [pool.submit(run_in_worker, warm_up) for _ in range(workers)]
    try:
        yield pool
    except BaseException:
        stop_pool(pool, set(warming))
        raise
    pool.shutdown(wait=True)


def warm_up() -> None:
    """pyarrow imports pandas (~0.2 s) the first time it converts a Python list: the partitions' first batch
    would pay it in every worker, after the serial start instead of during it."""
    import pyarrow as pa

    pa.array(["warm"])


def run_local(
    job: Job,
    partitions: Iterable[Partition],
    workers: int,
    fn: Callable[[Any, Any], dict] = run_partition,
    pool: ProcessPoolExecutor | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield each partition's result as it finishes, keeping at most ``2 × workers`` in flight.

    ``fn(job, partition)`` is the work of one partition (another stage, e.g. ``mix``, passes its own);
    ``pool`` is one :func:`warm_pool` started (its owner ends it), else one is made here.
    """
    if workers <= 1:
        for partition in partitions:
            yield fn(job, partition)
        return
    pending: set[Future] = set()
    running: dict[Future, Partition] = {}
    todo = iter(partitions)
    owned = pool is None
    pool = new_pool(workers) if pool is None else pool
    try:
        for partition in todo:
            future = pool.submit(run_in_worker, fn, job, partition)
            pending.add(future)
            running[future] = partition
            if len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    yield future.result()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                running.pop(future)
                yield future.result()
    except BaseException as exc:
        stop_pool(pool, pending)
        # a worker killed after the grace period (or by the system) left its temporaries: drop them now
        store = Store(job.output)
        for partition in running.values():
            with suppress(Exception):
                drop_temporaries(store, partition.index)
        if isinstance(exc, BrokenProcessPool):
            time.sleep(0.5)  # a signal sent to the whole job (SLURM) may reach the workers first: let ours land
            raise WorkerLost(
                "a worker process ended without finishing its partition (killed, or out of memory?); "
                "committed partitions are kept: rerun with --resume"
            ) from None
        raise
    if owned:
        pool.shutdown(wait=True)


def stop_pool(pool: ProcessPoolExecutor, pending: set[Future]) -> None:
    """Cancel queued partitions and end every worker process now (SIGTERM, then SIGKILL)."""
    for future in pending:
        future.cancel()
    # the executor has no public list of its processes; _processes has held them since Python 3.2
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(1.0)
    # the workers are gone, so the executor's manager thread ends at once; joining it here (wait=True)
    # keeps it from racing the interpreter's exit hook on a closed pipe ("Bad file descriptor")
    pool.shutdown(wait=True, cancel_futures=True)
