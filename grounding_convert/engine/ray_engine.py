"""The Ray engine (extra ``grounding-convert[ray]``): the same partition function as Ray tasks.

Readers and writers do not know which engine runs them; output is identical to the local engine because
each partition commits its own files and ``finalize`` orders them by partition index.  When the run stops
early (SIGINT/SIGTERM, an error) the pending tasks are cancelled with ``force=True``, which kills the
worker running each one; a Ray instance started here is shut down.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import UsageError
from ..readers.base import Partition
from .job import Job
from .pipeline import run_partition
from .signals import install as install_signal_handlers


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
        install_signal_handlers()  # ray.init installs its own SIGTERM handler; ours stops the run cleanly
    remote = ray.remote(fn)
    pending: list[Any] = []
    try:
        pending = [remote.remote(job, p) for p in partitions]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    except BaseException:
        # a signal, an error or --max-rejects: cancel what is queued or running (force: stop the worker)
        for ref in pending:
            with contextlib.suppress(Exception):  # already finished or gone
                ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
