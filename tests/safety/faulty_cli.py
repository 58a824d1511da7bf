"""The real ``grounding-convert`` command with a fault injected at the storage layer (run as a subprocess).

``Store._open_file`` is the one place an output file is opened; wrapping it here (before the CLI starts,
so forked workers inherit it) lets the tests make writes fail or slow down without a tiny file system:

* ``GC_FAULT_MATCH=-p00003-``: files whose path contains this fail after ``GC_FAULT_AFTER`` bytes
  (default 64) with ``GC_FAULT_ERRNO`` (default ENOSPC), leaving a half-written temporary behind them;
* ``GC_GATE=/path``: while that file exists, a shard of partition ``GC_GATE_FROM`` (default 2) or later is
  not written (the worker waits at its first write, its temporary file open), so a test can signal or
  start a second run at a known point, however fast or loaded the machine is, then remove the file.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import time
from typing import Any

from grounding_convert.output import storage

MATCH = os.environ.get("GC_FAULT_MATCH")
AFTER = int(os.environ.get("GC_FAULT_AFTER", "64"))
CODE = getattr(errno, os.environ.get("GC_FAULT_ERRNO", "ENOSPC"))
GATE = os.environ.get("GC_GATE")
GATE_FROM = int(os.environ.get("GC_GATE_FROM", "2"))


class _Failing:
    def __init__(self, fh: Any):
        self._fh, self._written = fh, 0

    def write(self, data: Any) -> int:
        if self._written + len(data) > AFTER:
            self._fh.write(data[: max(0, AFTER - self._written)])
            self._fh.flush()
            raise OSError(CODE, os.strerror(CODE))
        self._written += len(data)
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


class _Gated:
    """Waits at its first write while the gate file exists (the shard's temporary file is open by then)."""

    def __init__(self, fh: Any):
        self._fh = fh

    def write(self, data: Any) -> int:
        while os.path.exists(GATE):
            time.sleep(0.02)
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


_original = storage.Store._open_file


def _open_file(self: storage.Store, path: str, mode: str) -> Any:
    fh = _original(self, path, mode)
    if "r" in mode:
        return fh
    index = re.search(r"/data/\.parts/\.?[^/]*-p(\d{5})-", path)
    if GATE and index and int(index.group(1)) >= GATE_FROM:
        return _Gated(fh)
    if MATCH and MATCH in path:
        return _Failing(fh)
    return fh


storage.Store._open_file = _open_file

if __name__ == "__main__":
    from grounding_convert.cli.app import main

    sys.argv[0] = "grounding-convert"
    main()
