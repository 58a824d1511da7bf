"""One resolver for every path that comes out of input data (an image ``file_name``, a tar member name).

Annotation files are written by strangers.  A name such as ``../../etc/hostname`` or ``/root/.ssh/id_rsa``
must never make the tool read (and then embed, copy or draw) a file outside the image root, nor write
outside the output folder.  Every feature that turns a data string into a path calls :func:`resolve_under`
(or :func:`safe_relative` where the root is not local); none joins paths on its own.

A refused name raises :class:`UnsafePath`, a :class:`~grounding_convert.errors.RecordError` with reason
``unsafe-path``, so the record becomes a counted reject naming the offending string (never the content
of any file).
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote

from .errors import RecordError

UNSAFE_PATH = "unsafe-path"
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePath(RecordError):
    """A data-derived path that would reach outside its root (or is not a path at all)."""

    def __init__(self, name: object, why: str):
        self.name = name
        self.why = why
        super().__init__(UNSAFE_PATH, f"path {name!r} from the input data {why}; refused", raw=repr(name))

    def __reduce__(self):
        return (type(self), (self.name, self.why))


def safe_relative(name: object) -> PurePosixPath:
    """``name`` as a normalized relative POSIX path that cannot climb out of whatever root it is joined to.

    Backslashes count as separators (``..\\..\\x`` is the Windows spelling of a climb).  Refused: non-strings,
    empty names, NUL bytes, absolute paths, drive letters, URLs, and ``..`` segments that climb above the
    root after normalization (``a/../b`` is fine, ``a/../../b`` is not).
    """
    if not isinstance(name, str):
        raise UnsafePath(name, "is not a string")
    if "\x00" in name:
        raise UnsafePath(name, "holds a NUL byte")
    text = name.replace("\\", "/")
    if not text.strip():
        raise UnsafePath(name, "is empty")
    if text.startswith("/") or _DRIVE.match(text):
        raise UnsafePath(name, "is absolute")
    if "://" in text:
        raise UnsafePath(name, "is a URL")
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafePath(name, "climbs above its root with '..'")
            parts.pop()
            continue
        parts.append(part)
    if not parts:
        raise UnsafePath(name, "names the root itself")
    return PurePosixPath(*parts)


def resolve_under(root: str | os.PathLike[str], name: object) -> Path:
    """The local file ``root/name``, refused unless it stays inside ``root`` once symlinks are resolved.

    The file need not exist (the caller reports a missing one as ``missing-image``); a symlink anywhere
    on the way that points outside the root is refused like ``..``.
    """
    rel = safe_relative(name)
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base.joinpath(*rel.parts)))
    if target != base and base not in target.parents:
        raise UnsafePath(name, "resolves (through a symlink) outside its root")
    return target


def join_under(root: str, name: object) -> str:
    """``root/name`` for a root that may be an fsspec URL: the path component gets the same rule.

    Local roots go through :func:`resolve_under` (symlinks resolved); remote roots cannot hold symlinks
    that we could follow, so the normalized relative name is joined to them.
    """
    if is_remote(root):
        rel = safe_relative(name).as_posix()
        if "?" in rel or "#" in rel:
            raise UnsafePath(name, "holds a URL query or fragment")
        if "%" in rel:  # a server may decode %2e%2e/ into ../ after our check
            try:
                safe_relative(unquote(rel, errors="strict"))
            except UnicodeDecodeError:
                raise UnsafePath(name, "holds a percent escape that is not UTF-8") from None
            except UnsafePath:
                raise UnsafePath(name, "climbs above its root once percent escapes are decoded") from None
        return posixpath.join(str(root).rstrip("/"), rel)
    local = str(root)[len("file://") :] if str(root).startswith("file://") else str(root)
    return str(resolve_under(local, name))


def is_remote(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is an fsspec URL other than ``file://`` (no local symlinks to resolve there)."""
    text = str(root)
    return "://" in text and not text.startswith("file://")


def open_under(root: str | os.PathLike[str], name: object) -> BinaryIO:
    """Open the local file ``root/name`` for reading, refused like :func:`resolve_under`.

    Opened without following a symlink swapped in after the check (``O_NOFOLLOW``) and without blocking
    (a FIFO planted in an image folder must not hang the run); anything but a regular file is refused
    with an ``OSError``, which callers report as ``missing-image`` like a file that is absent.
    """
    target = resolve_under(root, name)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        if os.path.islink(target):  # replaced by a symlink between the check and the open
            raise UnsafePath(name, "became a symlink while being opened") from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{target} is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def create_under(dest: str | os.PathLike[str], name: object) -> Path:
    """A new path ``dest/name`` to write a file named from data (export, ``--extract-images``).

    Refused like :func:`resolve_under`, and also when the path already exists, or when any folder on the
    way is a symlink (one planted in the destination must not redirect the write).  Parent folders are
    created.  Open the result with :func:`open_new` so the final component is created exclusively.
    """
    rel = safe_relative(name)
    base = Path(os.path.realpath(dest))
    target = base.joinpath(*rel.parts)
    folder = base
    for part in rel.parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise UnsafePath(name, "passes through a symlink in the destination")
        folder.mkdir(exist_ok=True)
    if os.path.lexists(target):
        raise UnsafePath(name, "names a file that already exists in the destination")
    return target


def open_new(path: str | os.PathLike[str]) -> int:
    """A file descriptor for a file that must not exist yet, never following a symlink (O_EXCL|O_NOFOLLOW)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.open(path, flags, 0o644)


def write_new_under(dest: str | os.PathLike[str], name: object, data: bytes) -> Path:
    """Write ``data`` to the new file ``dest/name`` (see :func:`create_under`); returns its path."""
    target = create_under(dest, name)
    try:
        fd = open_new(target)
    except FileExistsError as exc:
        raise UnsafePath(name, "names a file that already exists in the destination") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return target
