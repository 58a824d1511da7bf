"""The progress bar: tqdm on a terminal, plain lines elsewhere (SLURM logs, CI, pipes).

tqdm redraws its bar with carriage returns, which a log file keeps as one endless line; off a terminal
each refresh becomes its own line instead, at most every ``LOG_INTERVAL`` seconds.
"""

from __future__ import annotations

import sys
from typing import IO

from tqdm import tqdm

LOG_INTERVAL = 10.0


class _Lines:
    """A stream for tqdm that turns each carriage-return redraw into one plain line."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(total: int, initial: int, enabled: bool, desc: str = "convert") -> tqdm:
    stream = sys.stderr
    if stream is not None and not stream.isatty():
        return tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="part",
            disable=not enabled,
            file=_Lines(stream),
            mininterval=LOG_INTERVAL,
            bar_format="{desc}: {n_fmt}/{total_fmt} partitions [{elapsed}<{remaining}{postfix}]",
        )
    return tqdm(total=total, initial=initial, unit="part", desc=desc, disable=not enabled, dynamic_ncols=True)
