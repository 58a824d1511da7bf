"""The default engine: partitions in a process pool (or in this process for one worker).

Results arrive in completion order; that is fine because every partition commits its own files and
``finalize`` orders shards by partition index, so the bytes never depend on the worker count.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from ..readers.base import Partition
from .job import Job
from .pipeline import run_partition


def run_local(
    job: Job, partitions: Iterable[Partition], workers: int, fn: Callable[[Any, Any], dict] = run_partition
) -> Iterator[dict[str, Any]]:
    """Yield each partition's result as it finishes, keeping at most ``2 × workers`` in flight.

    ``fn(job, partition)`` is the work of one partition (another stage, e.g. ``mix``, passes its own).
    """
    if workers <= 1:
        for partition in partitions:
            yield fn(job, partition)
        return
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pending: set[Future] = set()
    todo = iter(partitions)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        try:
            for partition in todo:
                pending.add(pool.submit(fn, job, partition))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
