"""What in an output folder this tool wrote, and refusing to touch anything else.

``--overwrite`` used to empty the output folder whatever it held: the input dataset when ``--output`` was
the input or its parent, a user's own files beside a previous run.  The rule now (DESIGN "the tool deletes
only what it wrote itself"): the output may not be, contain or hold the input; ``--overwrite`` replaces
only a previous run of this tool, recognised by its ``manifest.json`` or ``_progress/job.json``, and only
if every entry in the folder has a name this tool writes; otherwise it names the first foreign entry
and deletes nothing.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from contextlib import suppress

import fsspec
import orjson

from ..errors import UsageError
from .shards import EXTENSIONS
from .storage import Store

LOCK_PREFIX = ".grounding-convert"  # lock files and their temporaries (engine/lock.py)
OWN_DIRS = ("data", "data/.parts", "rejects", "_progress")
_EXT = "(?:" + "|".join(re.escape(e) for e in sorted(set(EXTENSIONS.values()))) + ")"
OWN_FILES = re.compile(
    "|".join(
        (
            r"manifest\.json",
            r"README\.md",
            rf"data/[^/]+-\d{{5}}-of-\d{{5}}\.{_EXT}",
            rf"data/\.parts/[^/]+-p\d{{5}}-\d{{4}}\.{_EXT}",
            r"rejects/part-\d{5}\.jsonl",
            r"_progress/(?:job|plan|part-\d{5})\.json",
        )
    )
)


def is_lock_name(name: str) -> bool:
    return name.startswith(LOCK_PREFIX)


def is_own_file(rel: str) -> bool:
    """A file name this tool writes (or its hidden temporary ``.name.tmp``, or a lock file)."""
    head, tail = posixpath.split(rel)
    if not head and is_lock_name(tail):
        return True
    if tail.startswith(".") and tail.endswith(".tmp"):
        rel = posixpath.join(head, tail[1:-4])
    return OWN_FILES.fullmatch(rel) is not None


# ------------------------------------------------------------------------------------ input vs output


def location(url: str) -> tuple[str, str]:
    """(file system, absolute normalised path): symlinks, ``..`` and trailing slashes resolved."""
    fs, path = fsspec.core.url_to_fs(url)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        return "file", os.path.realpath(path)
    return protocols[0], posixpath.normpath("/" + path.strip("/"))


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def check_separate(input_url: str, local_input: str, input_files: list, output_url: str) -> None:
    """Refuse an output that is the input, contains it, or holds any of the reader's input files."""
    out_fs, out = location(output_url)
    in_fs, inp = location(input_url)
    if out_fs != in_fs:
        return
    if out == inp:
        raise UsageError(f"--output {output_url} is the input {input_url}; choose another output folder")
    if _under(inp, out):
        raise UsageError(
            f"--output {output_url} contains the input {input_url}; choose an output folder outside the input"
        )
    if in_fs == "file" and not os.path.lexists(out):
        return  # ``out`` is resolved: an input file's real path can only lie under an output that exists
    local_root = os.path.realpath(local_input)
    folders: dict[str, str] = {}
    for file in input_files:
        real = _realpath(str(file), folders)
        if in_fs == "file":
            path = real
        elif _under(real, local_root):  # a remote input was copied into the cache: map back to its URL path
            path = posixpath.join(inp, os.path.relpath(real, local_root).replace(os.sep, "/"))
        else:
            continue
        if _under(path, out):
            raise UsageError(
                f"--output {output_url} holds the input file {file}; choose an output folder outside the input"
            )


def _realpath(file: str, folders: dict[str, str]) -> str:
    """``os.path.realpath(file)``, resolving each folder once: Flickr30K Entities has 60,000 input files
    in two folders, and resolving every path component of each was most of a short run's start."""
    folder, name = os.path.split(file)
    if name in ("", ".", "..") or os.path.islink(file):
        return os.path.realpath(file)
    real = folders.get(folder)
    if real is None:
        real = folders[folder] = os.path.realpath(folder)
    return os.path.join(real, name)


# ------------------------------------------------------------------------------------ a previous run


def _entries(store: Store) -> Iterator[tuple[str, str]]:
    """(relative path, kind) of everything under the output, sorted; kind is file, dir or other."""
    if store.is_local:
        yield from _walk_local(store.root, "")
        return
    found = store.fs.find(store.root, withdirs=True, detail=True)
    for path in sorted(found):
        rel = path.rstrip("/")[len(store.root.rstrip("/")) + 1 :]
        if rel:
            yield rel, "dir" if found[path].get("type") == "directory" else "file"


def _walk_local(root: str, rel: str) -> Iterator[tuple[str, str]]:
    """Symlinks are never followed (this tool writes none: a symlink is someone else's)."""
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        items = sorted(it, key=lambda e: e.name)
    for entry in items:
        path = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_symlink():
            yield path, "other"
        elif entry.is_dir(follow_symlinks=False):
            yield path, "dir"
            yield from _walk_local(root, path)
        elif entry.is_file(follow_symlinks=False):
            yield path, "file"
        else:
            yield path, "other"


def _json(store: Store, rel: str) -> object:
    try:
        with store.open(rel, "rb") as fh:
            return orjson.loads(fh.read())
    except (OSError, orjson.JSONDecodeError):
        return None


def holds_previous_run(store: Store) -> bool:
    """A folder this tool wrote: a manifest naming the tool, or the job file of an unfinished run."""
    manifest = _json(store, "manifest.json") if store.exists("manifest.json") else None
    if isinstance(manifest, dict) and manifest.get("tool") == "grounding-convert":
        return True
    job = _json(store, "_progress/job.json") if store.exists("_progress/job.json") else None
    return isinstance(job, dict) and "identity" in job


def foreign_entry(store: Store) -> str | None:
    """The first entry (sorted, depth first) that this tool did not write, or None."""
    run = None
    for rel, kind in _entries(store):
        if kind == "dir" and rel in OWN_DIRS:
            continue
        if kind == "file" and is_own_file(rel):
            if is_lock_name(rel):
                continue
            if run is None:
                run = holds_previous_run(store)
            if run:
                continue
        return rel + ("/" if kind == "dir" else "")
    return None


def check_replaceable(store: Store) -> None:
    """Refuse ``--overwrite`` of a folder holding anything that is not a previous run of this tool."""
    entry = foreign_entry(store)
    if entry is not None:
        raise UsageError(
            f"refusing to --overwrite {store.url}: {entry} was not written by grounding-convert "
            "(nothing was deleted; move it away or choose another --output)"
        )


def remove_own(store: Store) -> None:
    """Delete a previous run: only files :func:`is_own_file` names, then the folders they leave empty.

    Lock files stay (the running command holds one).  Call :func:`check_replaceable` first.
    """
    check_replaceable(store)
    entries = list(_entries(store))
    for rel, kind in entries:
        if kind == "file" and is_own_file(rel) and not is_lock_name(rel):
            with store.writing(rel):
                store.fs.rm_file(store.path(rel))
    for rel, kind in sorted(entries, key=lambda e: -e[0].count("/")):
        if kind == "dir" and rel in OWN_DIRS:
            _remove_empty_dir(store, rel)


def _remove_empty_dir(store: Store, rel: str) -> None:
    if store.is_local:
        with suppress(OSError):  # not empty (cannot happen after check_replaceable) or already gone
            os.rmdir(store.path(rel))
        return
    try:
        if not store.fs.ls(store.path(rel)):
            store.fs.rmdir(store.path(rel))
    except (OSError, NotImplementedError):
        pass  # object stores have no real folders


def check_output_is_folder(store: Store) -> None:
    if store.fs.exists(store.root) and not store.fs.isdir(store.root):
        raise UsageError(f"--output {store.url} is a file, not a folder; choose a folder")
