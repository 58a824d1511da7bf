"""SIGINT and SIGTERM stop the whole run: the parent stops its workers, reports, exits 130 / 143.

SLURM sends SIGTERM at a time limit or preemption, and ``kill PID`` sends it to the parent only; without
this, the parent died and the pool's workers lived on as orphans, holding memory and writing shards.

* The parent turns the first signal into :class:`Interrupted` (a ``BaseException``, like
  ``KeyboardInterrupt``, so no ``except Exception`` swallows it); the engine then stops its workers and
  the runner reports ``interrupted: N of M partitions committed``.  The first signal also restores the
  default action, so a second Ctrl-C kills at once (the workers die with the parent, see below).
* A worker ignores SIGINT (a terminal sends Ctrl-C to the whole process group; the parent decides), and
  on SIGTERM drops the partition it is writing (its temporary files) and exits.  On Linux it also asks
  the kernel for SIGKILL when its parent dies, so even a ``kill -9`` of the parent leaves no orphan.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Interrupted(BaseException):
    """The run was stopped by a signal; ``message`` is the line shown to the user."""

    def __init__(self, signum: int, message: str = ""):
        self.signum, self.message = int(signum), message
        super().__init__(message or signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __reduce__(self):
        return (type(self), (self.signum, self.message))


def _first_signal(signum: int, frame: Any) -> None:
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)  # the next one kills at once
    raise Interrupted(signum)


def install() -> None:
    """(Re)install the parent's handlers (Ray's init replaces SIGTERM's)."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _first_signal)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT/SIGTERM raise :class:`Interrupted` inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    install()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------------------------------- workers

_busy = False


def _worker_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _busy:
        raise Interrupted(signum)  # run_partition drops its temporary files on the way out
    os._exit(128 + signum)


def init_worker(parent: int) -> None:
    """Pool initializer: signals as described above; die with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(128 + signal.SIGTERM)


def run_in_worker(function: Callable[..., Any], *args: Any) -> Any:
    """Run one task in a pool worker; a SIGTERM during it ends the worker once the task cleaned up."""
    global _busy
    _busy = True
    try:
        return function(*args)
    except Interrupted as exc:
        os._exit(exc.exit_code)
    finally:
        _busy = False
