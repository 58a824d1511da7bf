"""The plain-data unpickler: loads py2/py3 plain pickles, refuses anything naming a global, runs nothing."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding_convert import safe_pickle
from grounding_convert.errors import InputFileError
from grounding_convert.safe_pickle import load_plain_pickle


class _Payload:
    """An object whose unpickling would call ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize(
    ("how", "global_name"),
    # the module part is spelled per protocol (posix/os, io/builtins, commands/subprocess)
    [("os.system", "system"), ("builtins.open", "open"), ("subprocess.call", "call")],
)
def test_code_executing_pickle_is_refused_and_nothing_runs(tmp_path, protocol, how, global_name):
    victim = tmp_path / "created-by-pickle"
    payload = {
        "os.system": _Payload(os.system, f"touch {victim}"),
        "builtins.open": _Payload(builtins.open, str(victim), "w"),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(victim)]),
    }[how]
    path = _write(tmp_path / "refs(unc).p", pickle.dumps([{"ref_id": 0}, payload], protocol=protocol))
    with pytest.raises(InputFileError) as info:
        load_plain_pickle(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(rf"refused to load: it asks for the global \w+\.{global_name};", message)
    assert "nothing in it was run" in message
    assert "expected a Python-2 cPickle of plain data (list of refs)" in message
    assert not victim.exists()


def test_refused_inside_nested_data_and_with_strict_unpickler(tmp_path, monkeypatch):
    victim = tmp_path / "x"
    data = pickle.dumps({"a": [1, {"b": _Payload(builtins.open, str(victim), "w")}]}, protocol=2)
    with pytest.raises(InputFileError, match=r"global io\.open"):
        load_plain_pickle(_write(tmp_path / "p", data))
    # with an extension registered in this process the pure-Python unpickler (EXT refused) is used
    monkeypatch.setitem(safe_pickle.copyreg._extension_cache, 0xABC, os.system)
    assert safe_pickle._unpickler_class() is safe_pickle._StrictPlainUnpickler
    with pytest.raises(InputFileError, match="extension code"):
        load_plain_pickle(_write(tmp_path / "ext", b"\x80\x02\x82\x01."))
    with pytest.raises(InputFileError, match=r"global io\.open"):
        load_plain_pickle(tmp_path / "p")
    assert load_plain_pickle(_write(tmp_path / "ok", pickle.dumps([1, "a"], protocol=2))) == [1, "a"]
    assert not victim.exists()


PLAIN = [
    {"sent_ids": [0, 1], "ref_id": 0, "split": "train", "ok": True, "none": None, "f": 263.87, "big": 2**70},
    ("a", "tuple"),
]


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_plain_data_loads_at_py2_protocols(tmp_path, protocol):
    path = _write(tmp_path / "refs.p", pickle.dumps(PLAIN, protocol=protocol))
    assert load_plain_pickle(path) == PLAIN


def test_py2_str_bytes_fall_back_to_utf8_then_latin1(tmp_path):
    # Python 2 cPickle opcodes for a py2 str: SHORT_BINSTRING (protocol 2) and STRING (protocol 0)
    ascii_only = b"\x80\x02]q\x00U\x04ladyq\x01a."
    utf8 = b"\x80\x02]q\x00U\x05caf\xc3\xa9q\x01a."
    latin1 = b"\x80\x02]q\x00U\x04caf\xe9q\x01a."
    protocol0_latin1 = b"(lp0\nS'caf\\xe9'\np1\na."
    assert load_plain_pickle(_write(tmp_path / "a.p", ascii_only)) == ["lady"]
    assert load_plain_pickle(_write(tmp_path / "u.p", utf8)) == ["café"]
    assert load_plain_pickle(_write(tmp_path / "l.p", latin1)) == ["café"]
    assert load_plain_pickle(_write(tmp_path / "0.p", protocol0_latin1)) == ["café"]
    with pytest.raises(UnicodeDecodeError):  # what a plain py3 load would do with the latin-1 bytes
        pickle.load(io.BytesIO(latin1))


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_pickle_is_an_input_file_error(tmp_path, cut):
    data = pickle.dumps(PLAIN, protocol=2)
    path = _write(tmp_path / "refs(unc).p", data[:-cut])
    with pytest.raises(InputFileError, match=r"truncated or not a pickle|corrupt") as info:
        load_plain_pickle(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"this is not a pickle at all", "truncated or not a pickle"),
        (b"\x80\x02]X\x02\x00\x00\x00\xff\xfea.", "not valid UTF-8"),
    ],
)
def test_garbage_is_an_input_file_error(tmp_path, content, problem):
    with pytest.raises(InputFileError, match=problem):
        load_plain_pickle(_write(tmp_path / "g.p", content))


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        load_plain_pickle(tmp_path / "refs(unc).p")


plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
        | st.tuples(children, children)
    ),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(value=plain_values, protocol=st.integers(0, pickle.HIGHEST_PROTOCOL), with_bytes=st.booleans())
def test_any_plain_value_round_trips(value, protocol, with_bytes):
    if with_bytes and protocol >= 3:  # bytes below protocol 3 need the _codecs.encode global (refused)
        value = [value, b"\x00\xffraw"]
    data = pickle.dumps(value, protocol=protocol)
    assert safe_pickle.loads_plain(data) == value
