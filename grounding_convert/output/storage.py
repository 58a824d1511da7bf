"""Output and input locations as fsspec file systems, so ``s3://``, ``gs://``, ``memory://`` and plain
paths all work the same way.  Everything that touches the output directory goes through :class:`Store`.
"""

from __future__ import annotations

import errno
import hashlib
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

import fsspec
import orjson

from ..errors import OutputWriteError


class Store:
    """A directory on some file system, with the few operations the engine needs (atomic writes)."""

    def __init__(self, url: str):
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/") or "/"

    def __getstate__(self) -> dict[str, Any]:  # picklable for worker processes
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])

    @property
    def is_local(self) -> bool:
        return "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def where(self, rel: str = "") -> str:
        """How a file is named in messages: the output as the user wrote it, then the relative path."""
        return f"{self.url.rstrip('/')}/{rel}" if rel else self.url

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def makedirs(self, rel: str = "") -> None:
        with self.writing(rel):
            self.fs.makedirs(self.path(rel) if rel else self.root, exist_ok=True)

    def open(self, rel: str, mode: str = "rb", hashed: bool = False) -> IO[Any]:
        """``hashed``: the returned writer keeps a sha256 of what it wrote (``.digest``, see :class:`_Guarded`)."""
        if "r" in mode:
            return self._open_file(self.path(rel), mode)
        with self.writing(rel):
            digest = hashlib.sha256() if hashed else None
            return _Guarded(self._open_file(self.path(rel), mode), self.where(rel), digest)

    def _open_file(self, path: str, mode: str) -> IO[Any]:
        """The one place a file of the output is opened (the tests inject disk-full faults here)."""
        return self.fs.open(path, mode)

    @contextmanager
    def writing(self, rel: str) -> Iterator[None]:
        """An ``OSError`` (disk full, quota, permission) becomes one error naming the file."""
        try:
            yield
        except OSError as exc:
            raise OutputWriteError(self.where(rel), describe_os_error(exc)) from exc

    def listdir(self, rel: str = "") -> list[str]:
        """Names (not paths) directly under ``rel``; [] when it does not exist."""
        target = self.path(rel) if rel else self.root
        if not self.fs.exists(target):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(target, detail=False))

    def is_empty(self) -> bool:
        return not self.listdir()

    def remove(self, rel: str) -> None:
        """Remove one file or folder this tool wrote (``--overwrite`` goes through output/ownership.py)."""
        if self.fs.exists(self.path(rel)):
            self.fs.rm(self.path(rel), recursive=True)

    def rename(self, src: str, dst: str) -> None:
        with self.writing(dst):
            self.fs.mv(self.path(src), self.path(dst))

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write to a temporary name, then rename: readers never see a half-written file."""
        tmp = tmp_name(rel)
        try:
            with self.open(tmp, "wb") as fh:
                fh.write(data)
        except OutputWriteError:
            self._discard(tmp)
            raise
        self.rename(tmp, rel)

    def _discard(self, rel: str) -> None:
        """Best effort: drop a temporary file whose writing failed (it is hidden either way)."""
        with suppress(OSError):
            self.remove(rel)

    def write_json_atomic(self, rel: str, value: Any) -> None:
        self.write_bytes_atomic(rel, orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")

    def read_json(self, rel: str) -> Any:
        with self.open(rel, "rb") as fh:
            return orjson.loads(fh.read())

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    def sha256(self, rel: str) -> str:
        digest = hashlib.sha256()
        with self.open(rel, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


class _Guarded:
    """A writable file whose write/flush/close errors name the file (pyarrow writes through it too)."""

    def __init__(self, fh: IO[Any], where: str, digest: Any = None):
        # digest: a running hashlib object of every byte written (a shard's sha256 without reading it back);
        # dropped (None) if the file is ever sought or written short, so the caller reads the file instead
        self._fh, self._where, self.digest = fh, where, digest

    def _guard(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as exc:
            raise OutputWriteError(self._where, describe_os_error(exc)) from exc

    def write(self, data: Any) -> int:
        written = self._guard(self._fh.write, data)
        if self.digest is not None:
            if written is not None and written != memoryview(data).nbytes:
                self.digest = None
            else:
                self.digest.update(data)
        return written

    def seek(self, *args: Any) -> int:
        self.digest = None
        return self._guard(self._fh.seek, *args)

    def flush(self) -> None:
        self._guard(self._fh.flush)

    def close(self) -> None:
        self._guard(self._fh.close)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> _Guarded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_os_error(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the words the user searches for, and the code scripts match."""
    code = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({code})" if code else text


def tmp_name(rel: str) -> str:
    """``data/x.parquet`` → ``data/.x.parquet.tmp`` (hidden, so no glob of finished shards matches it)."""
    head, tail = posixpath.split(rel)
    return posixpath.join(head, f".{tail}.tmp")
