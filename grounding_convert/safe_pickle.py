"""Load untrusted Python-2 ``cPickle`` files of plain data without ever running code from them.

RefCOCO's ``refs(<split_by>).p`` files are pickles (SOURCES.md §2.2) and a pickle can call any function it
names.  Every way a pickle reaches a function goes through ``find_class`` (GLOBAL, STACK_GLOBAL, INST,
OBJ) or the extension registry (EXT1/2/4), so refusing both leaves only the opcodes that build plain
values: None, bool, int, float, str, bytes, list, tuple, dict (and set/frozenset).  REDUCE/BUILD/NEWOBJ
then have no callable to apply and fail harmlessly.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from pathlib import Path
from typing import Any

EXPECTED = "a Python-2 cPickle of plain data (list of refs)"

# Python-2 ``str`` values are bytes; decode them strictly as ASCII (the default), then as UTF-8 (how
# most py2 code stored text), and only then as latin-1, which accepts any byte and so never fails.
ENCODINGS = ("ASCII", "utf-8", "latin1")


# What a damaged pickle raises from inside the unpickler (besides UnpicklingError/EOFError).
_CORRUPT = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, MemoryError)


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asked for something other than plain data; nothing it named was imported or called."""


def _refuse_global(module: str, name: str) -> Any:
    raise RefusedPickle(f"it asks for the global {module}.{name}; only plain data is allowed")


class _PlainUnpickler(pickle.Unpickler):
    """The fast (C) unpickler with every global refused."""

    def find_class(self, module: str, name: str) -> Any:
        return _refuse_global(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("it uses a persistent id; only plain data is allowed")


class _StrictPlainUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Pure-Python unpickler that also refuses EXT opcodes outright.

    The C unpickler answers an EXT code from ``copyreg._extension_cache`` without calling ``find_class``;
    that cache is empty unless something in this process registered extensions, and only then is this
    slower class used.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def find_class(self, module: str, name: str) -> Any:
        return _refuse_global(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("it uses a persistent id; only plain data is allowed")

    def _refuse_ext(self) -> None:
        raise RefusedPickle("it uses a registered extension code; only plain data is allowed")

    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = _refuse_ext
    del _op


def _unpickler_class() -> type[pickle.Unpickler]:
    if copyreg._extension_cache or copyreg._extension_registry:  # type: ignore[attr-defined]
        return _StrictPlainUnpickler
    return _PlainUnpickler


def loads_plain(data: bytes, encoding: str = "ASCII") -> Any:
    """Unpickle plain data from bytes with one encoding for py2 ``str``; raises on anything else."""
    return _unpickler_class()(io.BytesIO(data), encoding=encoding, errors="strict").load()


def load_plain_pickle(path: str | Path) -> Any:
    """Load a pickle of plain data, refusing every global; whole-file problems → InputFileError."""
    from .errors import InputFileError

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(str(path), "file not found", expected=EXPECTED) from None
    except OSError as exc:
        raise InputFileError(str(path), f"cannot be read ({exc.strerror or exc})", expected=EXPECTED) from None
    if not data:
        raise InputFileError(str(path), "is empty", expected=EXPECTED)
    for encoding in ENCODINGS:
        try:
            return loads_plain(data, encoding)
        except UnicodeDecodeError:
            continue  # a py2 str with bytes outside this encoding: try the next one
        except RefusedPickle as exc:
            raise InputFileError(
                str(path), f"refused to load: {exc} (nothing in it was run)", expected=EXPECTED
            ) from None
        except (pickle.UnpicklingError, EOFError) as exc:
            raise InputFileError(
                str(path), f"is truncated or not a pickle ({exc or type(exc).__name__})", expected=EXPECTED
            ) from None
        except _CORRUPT as exc:
            raise InputFileError(str(path), f"is corrupt ({type(exc).__name__}: {exc})", expected=EXPECTED) from None
    # latin-1 decodes every py2 str, so this is a unicode value whose UTF-8 bytes are broken
    raise InputFileError(str(path), "is corrupt (a unicode string is not valid UTF-8)", expected=EXPECTED)
