"""Reader and writer discovery through entry points (DESIGN §2).

The built-ins are registered in ``pyproject.toml`` exactly like a third-party plugin would be, so a new
dataset or model is a package of its own with an entry point in ``grounding_convert.readers`` or
``grounding_convert.writers``; nothing here changes.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from .errors import UsageError
from .readers.base import Reader
from .writers.base import Writer

READER_GROUP = "grounding_convert.readers"
WRITER_GROUP = "grounding_convert.writers"


@cache
def _group(group: str) -> dict[str, object]:
    return {ep.name: ep for ep in sorted(entry_points(group=group), key=lambda e: e.name)}


def reader_names() -> list[str]:
    return list(_group(READER_GROUP))


def writer_names() -> list[str]:
    return list(_group(WRITER_GROUP))


def get_reader(name: str) -> type[Reader]:
    return _load(READER_GROUP, name, "reader", Reader)


def get_writer(name: str) -> type[Writer]:
    return _load(WRITER_GROUP, name, "writer", Writer)


def _load(group: str, name: str, kind: str, base: type) -> type:
    eps = _group(group)
    if name not in eps:
        raise UsageError(f"unknown {kind} {name!r} (installed: {', '.join(eps) or 'none'})")
    cls = eps[name].load()  # type: ignore[attr-defined]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UsageError(f"{kind} plugin {name!r} does not point to a {base.__name__} subclass")
    return cls


def detect_reader(path: str) -> str:
    """The one reader whose ``detect`` accepts ``path`` (``canonical`` last: it is the most generic)."""
    names = [n for n in reader_names() if n != "canonical"] + (["canonical"] if "canonical" in reader_names() else [])
    hits = []
    for name in names:
        try:
            if get_reader(name).detect(path):
                hits.append(name)
        except Exception:  # a broken third-party detect must not break the others
            continue
    # refcoco / refcoco+ / refcocog share a layout: detect returns True only for the folder-name match.
    if not hits:
        raise UsageError(f"cannot tell which dataset {path!r} holds; pass --from (readers: {', '.join(names)})")
    return hits[0]
