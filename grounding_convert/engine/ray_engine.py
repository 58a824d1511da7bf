"""The Ray engine (extra ``grounding-convert[ray]``): the same partition function as Ray tasks.

Readers and writers do not know which engine runs them; output is identical to the local engine because
each partition commits its own files and ``finalize`` orders them by partition index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import UsageError
from ..readers.base import Partition
from .job import Job
from .pipeline import run_partition


def run_ray(
    job: Job,
    partitions: Iterable[Partition],
    workers: int,
    address: str | None = None,
    fn: Callable[[Any, Any], dict] = run_partition,
) -> Iterator[dict[str, Any]]:
    try:
        import ray
    except ImportError as exc:
        raise UsageError("--engine ray needs Ray: pip install 'grounding-convert[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        address = address or os.environ.get("RAY_ADDRESS")
        # A fresh local instance gets --workers CPUs; an existing cluster keeps its own resources.
        extra = {"num_cpus": workers} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **extra)
    remote = ray.remote(fn)
    try:
        pending = [remote.remote(job, p) for p in partitions]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()
