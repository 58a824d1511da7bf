"""Output and input locations as fsspec file systems, so ``s3://``, ``gs://``, ``memory://`` and plain
paths all work the same way.  Everything that touches the output directory goes through :class:`Store`.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import IO, Any

import fsspec
import orjson


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

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def makedirs(self, rel: str = "") -> None:
        self.fs.makedirs(self.path(rel) if rel else self.root, exist_ok=True)

    def open(self, rel: str, mode: str = "rb") -> IO[Any]:
        return self.fs.open(self.path(rel), mode)

    def listdir(self, rel: str = "") -> list[str]:
        """Names (not paths) directly under ``rel``; [] when it does not exist."""
        target = self.path(rel) if rel else self.root
        if not self.fs.exists(target):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(target, detail=False))

    def is_empty(self) -> bool:
        return not self.listdir()

    def remove_all(self) -> None:
        if self.fs.exists(self.root):
            for name in self.listdir():
                self.fs.rm(self.path(name), recursive=True)

    def remove(self, rel: str) -> None:
        if self.fs.exists(self.path(rel)):
            self.fs.rm(self.path(rel), recursive=True)

    def rename(self, src: str, dst: str) -> None:
        self.fs.mv(self.path(src), self.path(dst))

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write to a temporary name, then rename: readers never see a half-written file."""
        tmp = tmp_name(rel)
        with self.open(tmp, "wb") as fh:
            fh.write(data)
        self.rename(tmp, rel)

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


def tmp_name(rel: str) -> str:
    """``data/x.parquet`` → ``data/.x.parquet.tmp`` (hidden, so no glob of finished shards matches it)."""
    head, tail = posixpath.split(rel)
    return posixpath.join(head, f".{tail}.tmp")
