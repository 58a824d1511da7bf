"""Image files named by the annotations: opened only under the image root, their real sizes checked.

Two jobs that every feature reading images shares (OFA ``--embed-images``, ``preview``, Visual7W sizes,
the ``--image-root`` size check of :class:`SizeCheck`):

* **opening** a file whose name comes from the data: always through :mod:`grounding_convert.safe_paths`
  (a hostile name is an ``unsafe-path`` reject), and a file that is absent, not a regular file or not an
  image is a ``missing-image`` reject, never an exception that ends the run;
* **sizes**: annotations carry the width/height the boxes were drawn on, and a dataset whose images were
  re-encoded or resized since (a "downscaled" mirror, a thumbnail folder) silently puts every box in the
  wrong place.  With ``--image-root`` the pipeline reads each image's header (Pillow's lazy ``open``: the
  header only, no pixel decode) and holds the annotation to it: ``--size-mismatch reject`` (default),
  ``rescale`` (boxes scaled to the real image, both sizes kept in ``meta``) or ``trust``.

Headers are cached per resolved path (least recently used first out), so the many samples of one image
(Visual Genome has ~50 regions per image) cost one header read, and a 100k-image run stays fast.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections import OrderedDict
from typing import BinaryIO, Generic, TypeVar

import fsspec
from PIL import Image

from .errors import RecordError
from .safe_paths import UnsafePath, is_remote, join_under, open_under, resolve_under
from .schema import Sample

MISSING_IMAGE = "missing-image"
SIZE_MISMATCH = "size-mismatch"
POLICIES = ("reject", "rescale", "trust")
CACHE_SIZE = 1 << 17  # 131,072 images: a few tens of MB, more than one partition's images

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A dict that forgets its least recently used entry beyond ``capacity``."""

    def __init__(self, capacity: int = CACHE_SIZE):
        self.capacity = max(1, capacity)
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def open_image(root: str | os.PathLike[str], name: object) -> BinaryIO:
    """The image file ``root/name`` opened for reading (local or fsspec root), its name checked first.

    Raises :class:`~grounding_convert.safe_paths.UnsafePath` for a hostile name and a ``missing-image``
    :class:`RecordError` when the file cannot be opened.
    """
    try:
        if is_remote(root):
            return fsspec.open(join_under(str(root), name), "rb").open()
        return open_under(root, name)
    except UnsafePath:
        raise
    except Exception as exc:  # absent, a folder, a FIFO, no permission, a remote error
        raise missing(root, name, exc) from exc


def read_image(root: str | os.PathLike[str], name: object) -> bytes:
    """All bytes of the image ``root/name`` (OFA's base64 column), refused or missing as :func:`open_image`."""
    with open_image(root, name) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise missing(root, name, exc) from exc


def missing(root: str | os.PathLike[str], name: object, exc: BaseException) -> RecordError:
    """The ``missing-image`` error for ``name``; names the file and the cause, never any file content."""
    cause = (exc.strerror or str(exc)) if isinstance(exc, OSError) else type(exc).__name__
    return RecordError(MISSING_IMAGE, f"image {name!r} cannot be read under {str(root)!r} ({cause})", raw=name)


def header_size(fh: BinaryIO) -> tuple[int, int]:
    """(width, height) from the image header; Pillow's ``open`` is lazy, so no pixel is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # a header read decodes nothing
        with Image.open(fh) as image:
            width, height = image.size
    if width <= 0 or height <= 0:
        raise ValueError(f"header size {width}x{height}")
    return width, height


class ImageSizes:
    """Real sizes of the images under one root, cached by resolved path (and name → path, once per name)."""

    def __init__(self, root: str, capacity: int = CACHE_SIZE):
        self.root = root
        self.remote = is_remote(root)
        self._paths: LRU[object, str | RecordError] = LRU(capacity)
        self._sizes: LRU[str, tuple[int, int] | RecordError] = LRU(capacity)
        self.header_reads = 0  # how many files were actually opened (tests check the cache with it)

    def size(self, name: object) -> tuple[int, int]:
        """(width, height) of the image ``name``; raises ``unsafe-path`` / ``missing-image`` RecordErrors."""
        key = name if isinstance(name, str) else repr(name)
        path = self._paths.get(key)
        if path is None:
            path = self._locate(name)
            self._paths.put(key, path)
        if isinstance(path, RecordError):
            raise _again(path)
        size = self._sizes.get(path)
        if size is None:
            size = self._read(name, path)
            self._sizes.put(path, size)
        if isinstance(size, RecordError):
            raise _again(size)
        return size

    def _locate(self, name: object) -> str | RecordError:
        try:
            return join_under(self.root, name) if self.remote else str(resolve_under(self.root, name))
        except UnsafePath as exc:
            return exc

    def _read(self, name: object, path: str) -> tuple[int, int] | RecordError:
        self.header_reads += 1
        try:
            with open_image(self.root, name) as fh:
                return header_size(fh)
        except RecordError as exc:
            return exc
        except Exception as exc:  # not an image, truncated header, a decompression bomb
            return RecordError(
                MISSING_IMAGE, f"image {name!r} under {self.root!r} is not a readable image ({exc})", raw=name
            )


def _again(error: RecordError) -> RecordError:
    """A fresh copy of a cached error (re-raising one object would chain tracebacks forever)."""
    cls, args = error.__reduce__()[:2]  # RecordError and UnsafePath both rebuild from their arguments
    return cls(*args)


class SizeCheck:
    """Holds each sample's annotated image size to the real one read from ``root`` (``--size-mismatch``)."""

    def __init__(self, root: str, policy: str = "reject", capacity: int = CACHE_SIZE):
        if policy not in POLICIES:
            raise ValueError(f"--size-mismatch takes {', '.join(POLICIES)}, not {policy!r}")
        self.policy = policy
        self.sizes = ImageSizes(root, capacity)

    def __call__(self, sample: Sample) -> tuple[Sample, str | None]:
        """The sample to convert (rescaled when asked) and the note to count, if any.

        Raises RecordError ``unsafe-path``, ``missing-image`` or (policy ``reject``) ``size-mismatch``.
        """
        width, height = self.sizes.size(sample.image.file)
        annotated_w, annotated_h = sample.image.width, sample.image.height
        if not _usable(annotated_w) or not _usable(annotated_h):  # no annotated size: the image tells it
            image = dataclasses.replace(sample.image, width=width, height=height)
            return dataclasses.replace(sample, image=image), "size-from-image"
        if (annotated_w, annotated_h) == (width, height):
            return sample, None
        if self.policy == "trust":
            return sample, "size-mismatch-trusted"
        if self.policy == "reject":
            raise RecordError(
                SIZE_MISMATCH,
                f"image {sample.image.file!r} is {width}x{height} but the annotation says "
                f"{annotated_w}x{annotated_h} (--size-mismatch rescale scales the boxes, trust keeps them)",
                raw={"annotated": [annotated_w, annotated_h], "image": [width, height]},
            )
        return rescale(sample, width, height), "size-rescaled"


def _usable(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def rescale(sample: Sample, width: int, height: int) -> Sample:
    """The sample with its boxes scaled from the annotated size to ``width`` x ``height``.

    ``v * real / annotated`` (not ``v * (real / annotated)``): a box edge on the annotated border lands
    exactly on the real border.  New objects throughout: readers may share one ImageRef between samples.
    """
    annotated_w, annotated_h = sample.image.width, sample.image.height

    def scaled(b: list[float]) -> list[float]:
        return [
            b[0] * width / annotated_w,
            b[1] * height / annotated_h,
            b[2] * width / annotated_w,
            b[3] * height / annotated_h,
        ]

    regions = [dataclasses.replace(region, boxes=[scaled(b) for b in region.boxes]) for region in sample.regions]
    meta = dict(sample.meta)
    meta["annotated_width"], meta["annotated_height"] = annotated_w, annotated_h
    image = dataclasses.replace(sample.image, width=width, height=height)
    return dataclasses.replace(sample, image=image, regions=regions, meta=meta)
