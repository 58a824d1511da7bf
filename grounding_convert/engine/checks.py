"""The numeric job and run options checked before a conversion touches the output folder.

:func:`~grounding_convert.engine.runner.make_job` and :func:`~grounding_convert.engine.runner.convert`
call these, so the CLI, the Python API, ``demo`` and direct engine users are refused alike, with the
CLI's one-line message (``Invalid value for '--workers': 0 (accepted: ...)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import UsageError
from ..option_types import (
    LIMIT,
    MAX_REJECTS,
    NUM_WORKERS,
    SEED,
    SHARD_BYTES,
    SHARD_RECORDS,
    TURNS,
    WORKER_INDEX,
    WORKERS,
    Choice,
    OptionType,
    check,
)

ENGINES = ("local", "ray")

#: keyword of make_job / RunOptions → (CLI flag, accepted values)
JOB_OPTIONS: dict[str, tuple[str, OptionType]] = {
    "seed": ("--seed", SEED),
    "limit": ("--limit", LIMIT),
    "max_records_per_shard": ("--max-records-per-shard", SHARD_RECORDS),
    "max_shard_bytes": ("--max-shard-bytes", SHARD_BYTES),
    "max_rejects": ("--max-rejects", MAX_REJECTS),
    "turns": ("--turns", TURNS),
}
RUN_OPTIONS: dict[str, tuple[str, OptionType]] = {
    "workers": ("--workers", WORKERS),
    "engine": ("--engine", Choice(ENGINES)),
    "num_workers": ("--num-workers", NUM_WORKERS),
    "worker_index": ("--worker-index", WORKER_INDEX),
}


def checked_job_options(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the numeric job options parsed (``"64KiB"`` → 65536); None stays None."""
    out = dict(values)
    for key, (flag, kind) in JOB_OPTIONS.items():
        if out.get(key) is not None:
            out[key] = check(flag, kind, out[key])
    return out


def checked_run_options(run: Any) -> Any:
    """A copy of a :class:`RunOptions` with ``workers="auto"`` resolved and every count in range."""
    changes = {key: check(flag, kind, getattr(run, key)) for key, (flag, kind) in RUN_OPTIONS.items()}
    if changes["worker_index"] >= changes["num_workers"]:
        raise UsageError(
            f"Invalid value for '--worker-index': {changes['worker_index']} (accepted: a whole number from 0 to "
            f"{changes['num_workers'] - 1}, one less than --num-workers {changes['num_workers']})"
        )
    return dataclasses.replace(run, **changes)
