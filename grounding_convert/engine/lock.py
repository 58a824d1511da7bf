"""One writer per output folder: a lock file naming the process and host that holds it.

A user who starts the same job twice would otherwise get two runs writing, renaming and deleting the same
shards.  A run holds ``.grounding-convert.lock`` in the output folder; a slice of a SLURM array
(``--num-workers N --worker-index I``) holds ``.grounding-convert.slice-IIIII-of-NNNNN.lock`` instead, so
the slices of one array run side by side while a plain run, ``finalize`` or a second copy of the same slice
are refused.

A lock whose holder is gone is stale and taken over (a killed run must not block ``--resume``): on the same
host the holder's pid is checked (and its start time, against pid reuse); from another host its heartbeat,
rewritten every ``HEARTBEAT_SECONDS``, must be younger than ``STALE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import UsageError
from ..output.ownership import LOCK_PREFIX
from ..output.storage import Store

LOCK_FILE = f"{LOCK_PREFIX}.lock"
_LOCK_RE = re.compile(re.escape(LOCK_PREFIX) + r"(?:\.slice-(\d+)-of-(\d+))?\.lock")
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # a holder on another host silent this long is gone (clocks may differ a little)
HOST = socket.gethostname()


class OutputLocked(UsageError):
    """Another live run holds the output folder."""


def lock_name(num_workers: int = 1, worker_index: int = 0) -> str:
    if num_workers <= 1:
        return LOCK_FILE
    return f"{LOCK_PREFIX}.slice-{worker_index:05d}-of-{num_workers:05d}.lock"


def _slice_of(name: str) -> tuple[int, int] | None:
    m = _LOCK_RE.fullmatch(name)
    return (int(m.group(1)), int(m.group(2))) if m and m.group(1) else None


@dataclass
class Holder:
    name: str
    pid: int
    host: str
    started: float
    heartbeat: float
    token: str
    command: str = "convert"
    proc_start: str | None = None

    @classmethod
    def parse(cls, name: str, data: bytes) -> Holder | None:
        try:
            d = orjson.loads(data)
            return cls(
                name, int(d["pid"]), str(d["host"]), float(d["started"]), float(d["heartbeat"]), str(d["token"]),
                str(d.get("command", "convert")), d.get("proc_start"),
            )  # fmt: skip
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def alive(self) -> bool:
        if self.host != HOST:
            return time.time() - self.heartbeat < STALE_SECONDS
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # someone else's process: alive
        now = _proc_start(self.pid)
        return self.proc_start is None or now is None or now == self.proc_start

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"{self.command} pid {self.pid} on host {self.host}, running since {since}"


def _proc_start(pid: int) -> str | None:
    """The process start time in clock ticks (/proc/PID/stat field 22): a reused pid has another one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


class OutputLock:
    """Context manager holding the lock of one output folder for one run (or one array slice)."""

    def __init__(self, store: Store, num_workers: int = 1, worker_index: int = 0, command: str = "convert"):
        self.store, self.command = store, command
        self.name = lock_name(num_workers, worker_index)
        self.slice = _slice_of(self.name)
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    # ------------------------------------------------------------------------------- public

    def probe(self) -> None:
        """Refuse now, without writing anything, if a live run holds a conflicting lock."""
        for name in self._lock_names():
            holder = self._read(name)
            if holder is not None and (name == self.name or self._conflicts(name)) and holder.alive():
                raise self._refusal(holder)

    def acquire(self) -> None:
        self.store.makedirs()
        for _ in range(5):
            if self._create():
                break
            holder = self._read(self.name)
            if holder is None:
                if self._unreadable_is_fresh(self.name):
                    raise OutputLocked(
                        f"output {self.store.url} is locked by {self.store.where(self.name)}, which is unreadable; "
                        "if no other grounding-convert run uses this folder, delete that file"
                    )
                self._break(self.name, None)
            elif holder.alive():
                raise self._refusal(holder)
            else:
                self._break(self.name, holder)
        else:
            raise OutputLocked(f"could not take the lock {self.store.where(self.name)} (it keeps changing)")
        self.held = True
        for name in self._lock_names():
            if name == self.name:
                continue
            holder = self._read(name)
            if holder is None or not holder.alive():
                if holder is not None:
                    self._break(name, holder)
                continue
            if self._conflicts(name):
                self.release()
                raise self._refusal(holder)
        self._thread = threading.Thread(target=self._beat, name="grounding-convert-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self.held:
            holder = self._read(self.name)
            if holder is not None and holder.token == self.token:
                with contextlib.suppress(OSError):
                    self.store.fs.rm_file(self.store.path(self.name))
            self.held = False

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------------------------- internals

    def _content(self, started: float) -> bytes:
        value: dict[str, Any] = {
            "pid": os.getpid(),
            "host": HOST,
            "started": started,
            "heartbeat": time.time(),
            "token": self.token,
            "command": self.command,
            "proc_start": _proc_start(os.getpid()),
        }
        return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"

    def _create(self) -> bool:
        """Create the lock file with its full content, failing if it exists (no one sees it half written)."""
        self._started = time.time()
        data, path = self._content(self._started), self.store.path(self.name)
        if not self.store.is_local:  # object stores: best effort (check, write, read back)
            if self.store.fs.exists(path):
                return False
            with self.store.writing(self.name):
                self.store.fs.pipe_file(path, data)
            holder = self._read(self.name)
            return holder is not None and holder.token == self.token
        tmp = f"{path}.{self.token}.tmp"
        with self.store.writing(self.name):
            with open(tmp, "wb") as fh:
                fh.write(data)
            try:
                os.link(tmp, path)  # atomic and exclusive
                return True
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                return True
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _read(self, name: str) -> Holder | None:
        try:
            with self.store.open(name, "rb") as fh:
                return Holder.parse(name, fh.read())
        except (OSError, FileNotFoundError):
            return None

    def _unreadable_is_fresh(self, name: str) -> bool:
        try:
            modified = self.store.fs.modified(self.store.path(name)).timestamp()
        except (OSError, NotImplementedError, AttributeError):
            return False  # gone, or no way to tell: take it over
        return time.time() - modified < STALE_SECONDS

    def _break(self, name: str, holder: Holder | None) -> None:
        """Remove a stale lock, unless it was replaced by a live one in between."""
        path = self.store.path(name)
        if not self.store.is_local:
            with contextlib.suppress(OSError):
                self.store.fs.rm_file(path)
            return
        aside = f"{path}.stale-{self.token}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return  # someone else broke it
        with open(aside, "rb") as fh:
            now = Holder.parse(name, fh.read())
        if holder is not None and now is not None and now.token != holder.token:
            with contextlib.suppress(OSError):
                os.link(aside, path)  # we moved a fresh lock: put it back
        os.unlink(aside)

    def _lock_names(self) -> list[str]:
        try:
            return [n for n in self.store.listdir() if _LOCK_RE.fullmatch(n)]
        except OSError:
            return []

    def _conflicts(self, other: str) -> bool:
        """Slices of the same array run together; everything else runs alone."""
        theirs = _slice_of(other)
        if self.slice is None or theirs is None:
            return True
        return theirs[1] != self.slice[1]

    def _refusal(self, holder: Holder) -> OutputLocked:
        return OutputLocked(
            f"output {self.store.url} is in use by another run ({holder.describe()}; lock "
            f"{self.store.where(holder.name)}); wait for it to finish, or delete the lock if that run is gone"
        )

    def _beat(self) -> None:
        """Rewrite the heartbeat so runs on other hosts can tell this lock is alive."""
        path = self.store.path(self.name)
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                holder = self._read(self.name)
                if holder is None or holder.token != self.token:
                    return  # someone removed or replaced it
                data = self._content(self._started)
                if self.store.is_local:
                    tmp = f"{path}.{self.token}.tmp"
                    with open(tmp, "wb") as fh:
                        fh.write(data)
                    os.replace(tmp, path)
                else:
                    self.store.fs.pipe_file(path, data)
            except Exception:  # noqa: BLE001 - a missed heartbeat (disk full) must not end the run
                continue
