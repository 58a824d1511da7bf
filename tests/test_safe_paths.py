"""The one resolver for data-derived paths: nothing climbs out of its root."""

from __future__ import annotations

import os

import pytest

from grounding_convert.errors import RecordError
from grounding_convert.safe_paths import UnsafePath, join_under, resolve_under, safe_relative


@pytest.mark.parametrize(
    "name",
    [
        "../../../../../../../../../../../../etc/hostname",
        "/etc/hostname",
        "a/../../x",
        "..\\..\\x",
        "C:\\Windows\\win.ini",
        "c:x",
        "ok\x00.jpg",
        "",
        ".",
        "a/..",
        "http://example.invalid/x.jpg",
        None,
        17,
    ],
)
def test_hostile_names_are_refused(tmp_path, name):
    with pytest.raises(UnsafePath) as info:
        resolve_under(tmp_path, name)
    assert isinstance(info.value, RecordError)
    assert info.value.reason == "unsafe-path"
    assert repr(name) in info.value.message


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.jpg", "a.jpg"), ("x/./y.jpg", "x/y.jpg"), ("x/../y.jpg", "y.jpg"), ("x\\y.jpg", "x/y.jpg"), ("x//y", "x/y")],
)
def test_plain_names_normalize(name, expected):
    assert safe_relative(name).as_posix() == expected


def test_symlink_out_of_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "secret.txt"
    root.mkdir()
    outside.write_text("secret")
    os.symlink(outside, root / "img.jpg")
    os.symlink(tmp_path, root / "up")
    (root / "fine.jpg").write_bytes(b"x")
    with pytest.raises(UnsafePath):
        resolve_under(root, "img.jpg")
    with pytest.raises(UnsafePath):
        resolve_under(root, "up/secret.txt")
    assert resolve_under(root, "fine.jpg") == (root / "fine.jpg").resolve()
    assert resolve_under(root, "missing/not-yet.jpg").parent.name == "missing"


def test_remote_roots_get_the_same_rule():
    assert join_under("s3://bucket/images/", "a/b.jpg") == "s3://bucket/images/a/b.jpg"
    with pytest.raises(UnsafePath):
        join_under("s3://bucket/images", "../other/b.jpg")


def test_unsafe_path_survives_pickling():
    import pickle

    err = UnsafePath("../x", "climbs")
    again = pickle.loads(pickle.dumps(err))
    assert again.reason == "unsafe-path" and again.message == err.message


def test_writes_named_from_data_stay_new_and_inside(tmp_path):
    from grounding_convert.safe_paths import write_new_under

    dest = tmp_path / "dest"
    dest.mkdir()
    written = write_new_under(dest, "a/b.jpg", b"data")
    assert written.read_bytes() == b"data"
    with pytest.raises(UnsafePath):  # never overwrites
        write_new_under(dest, "a/b.jpg", b"other")
    assert written.read_bytes() == b"data"
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, dest / "planted")
    with pytest.raises(UnsafePath):  # never follows a planted folder symlink
        write_new_under(dest, "planted/x.jpg", b"x")
    os.symlink(outside / "target.jpg", dest / "link.jpg")
    with pytest.raises(UnsafePath):  # nor a planted file symlink
        write_new_under(dest, "link.jpg", b"x")
    with pytest.raises(UnsafePath):
        write_new_under(dest, "../escape.jpg", b"x")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ["%2e%2e/secret.jpg", "a/%2E%2E/%2e%2e/x", "x.jpg?raw=1", "x.jpg#frag", "%ff.jpg"])
def test_remote_roots_refuse_escapes_a_server_would_decode(name):
    with pytest.raises(UnsafePath):
        join_under("https://images.example.invalid/coco/", name)
    assert join_under("https://images.example.invalid/coco/", "a%20b.jpg").endswith("/coco/a%20b.jpg")


def test_open_under_reads_regular_files_only(tmp_path):
    from grounding_convert.safe_paths import open_under

    (tmp_path / "a.jpg").write_bytes(b"jpeg")
    with open_under(tmp_path, "a.jpg") as fh:
        assert fh.read() == b"jpeg"
    os.mkfifo(tmp_path / "fifo.jpg")  # opening must neither block nor read it
    (tmp_path / "dir.jpg").mkdir()
    for name in ("fifo.jpg", "dir.jpg", "absent.jpg"):
        with pytest.raises(OSError) as info:
            open_under(tmp_path, name)
        assert not isinstance(info.value, UnsafePath)
    with pytest.raises(UnsafePath):
        open_under(tmp_path, "../a.jpg")


def test_fsspec_image_roots_get_the_same_rule():
    import fsspec

    from grounding_convert.images import ImageSizes, read_image
    from grounding_convert.synth.images import jpeg_bytes

    fs = fsspec.filesystem("memory")
    fs.pipe("/gc-safe-paths/root/a.jpg", jpeg_bytes(12, 8))
    fs.pipe("/gc-safe-paths/secret.jpg", jpeg_bytes(5, 5))
    sizes = ImageSizes("memory://gc-safe-paths/root")
    assert sizes.size("a.jpg") == (12, 8)
    assert read_image("memory://gc-safe-paths/root", "a.jpg") == jpeg_bytes(12, 8)
    for name in ("../secret.jpg", "%2e%2e/secret.jpg", "/gc-safe-paths/secret.jpg"):
        with pytest.raises(UnsafePath):
            sizes.size(name)
        with pytest.raises(UnsafePath):
            read_image("memory://gc-safe-paths/root", name)
    with pytest.raises(RecordError, match="missing-image"):
        sizes.size("absent.jpg")
