"""IDX, the MNIST file format: reading, writing and loading MNIST-style data sets.

Byte pixels become float32 ``[N, H, W, 1]`` in ``[0, 1]``; float pixels stay
as stored. Every malformed file is refused naming the file and what was
expected.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import IO

import numpy as np

from vmaptune.data.dataset import Dataset
from vmaptune.data.loaders import from_arrays, split_indices
from vmaptune.data.streams import read_at_most
from vmaptune.errors import DataError

# IDX, the MNIST file format: a big-endian header of two zero bytes, a type code,
# the number of dimensions, then one uint32 size per dimension, then the values
# in C order. See http://yann.lecun.com/exdb/mnist/.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _describe_idx_types() -> str:
  return ", ".join(f"0x{code:02X} ({dtype.newbyteorder('=').name})"
                   for code, dtype in IDX_TYPES.items())


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file, plain or gzip-compressed (detected from its bytes).

  A compressed file is decompressed piece by piece and never past the size its
  header declares: a small archive that expands to gigabytes is refused having
  read one byte more than the header allows.

  Args:
    path: e.g. ``train-images-idx3-ubyte.gz``.

  Returns:
    The stored array, its dims from the header (e.g. ``[60000, 28, 28]``
    uint8 for MNIST's training images), in native byte order.

  Raises:
    DataError: a missing or unreadable file, a magic number that is not
      IDX's, an unknown type code, or a file shorter or longer than its
      header declares; the message names the file and what was expected.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(f"no such IDX file: {path}")
  try:
    with open(path, "rb") as f:
      compressed = f.read(2) == _GZIP_MAGIC
      f.seek(0)
      if not compressed:
        return _read_idx_stream(f, path, size=os.fstat(f.fileno()).st_size)
      try:
        with gzip.GzipFile(fileobj=f) as stream:
          return _read_idx_stream(stream, path, size=None)
      except (OSError, EOFError, zlib.error) as e:  # Truncated or corrupt archives.
        raise DataError(f"{path}: a damaged gzip file ({e}); expected a complete .gz of an "
                        "IDX file") from None
  except OSError as e:  # E.g. no permission to read it.
    raise DataError(f"{path}: cannot be read ({e}); expected a readable IDX file") from None


def _read_idx_header(stream: IO[bytes], path: str) -> tuple[np.dtype, tuple[int, ...], int]:
  """The header's value type, dims and length in bytes (the stream is left after it)."""
  magic = read_at_most(stream, 4)
  if len(magic) < 4 or magic[:2] != b"\0\0":
    found = f"magic number 0x{bytes(magic).hex().upper()}" if magic else "empty file"
    raise DataError(f"{path}: {found}; expected IDX's magic number 0x0000TTNN: two zero "
                    "bytes, a type code TT and the number of dimensions NN (e.g. 0x00000803 "
                    "for uint8 images [N, H, W], 0x00000801 for uint8 labels [N])")
  code, ndim = magic[2], magic[3]
  if code not in IDX_TYPES:
    raise DataError(f"{path}: type code 0x{code:02X} in the magic number is unknown; "
                    f"expected one of {_describe_idx_types()}")
  if ndim == 0:
    raise DataError(f"{path}: the magic number declares 0 dimensions; expected at least 1")
  header = 4 + 4 * ndim
  sizes = read_at_most(stream, 4 * ndim)
  if len(sizes) < 4 * ndim:
    raise DataError(f"{path}: truncated header: {ndim} dimension sizes need {header} bytes, "
                    f"the file holds {4 + len(sizes)}")
  return IDX_TYPES[code], tuple(int(d) for d in np.frombuffer(sizes, ">u4")), header


def _read_idx_stream(stream: IO[bytes], path: str, size: int | None) -> np.ndarray:
  """The array of an IDX stream (``size``: the file's length in bytes, ``None`` when
  it is decompressed: then at most one byte past the declared data is read)."""
  dtype, dims, header = _read_idx_header(stream, path)
  expected = math.prod(dims) * dtype.itemsize
  if size is None:  # One byte past the declared data tells a stream that is too long.
    raw = read_at_most(stream, expected + 1)
    found = len(raw)
    holds = f"{found}" if found <= expected else f"more (reading stopped after {found})"
  else:  # A plain file's size is known before any of its data is read.
    raw, found = b"", size - header
    if found == expected:
      raw = read_at_most(stream, expected)
      found = len(raw)  # Shorter only if the file shrank since.
    holds = f"{found}"
  if found != expected:
    problem = "truncated" if found < expected else "too long"
    raise DataError(f"{path}: {problem}: the header declares dims {dims} of "
                    f"{dtype.newbyteorder('=').name}, {expected} bytes of data, but the file "
                    f"holds {holds}")
  try:
    values = np.frombuffer(raw, dtype, count=math.prod(dims)).reshape(dims)
  except ValueError as e:  # Sizes that match the data yet are more axes than NumPy holds, or
    # a zero beside sizes whose product overflows: nothing was allocated.
    raise DataError(f"{path}: the header declares dims {dims}, which no NumPy array can "
                    f"hold ({e}); expected the dims of an array such as [N, H, W]") from None
  return values.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array) -> None:
  """Writes ``array`` as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

  Args:
    path: the file to write (created or replaced; a symbolic link there is
      refused, never written through).
    array: ``[d0, ...]`` (at least one axis) of uint8, int8, int16, int32,
      float32 or float64, the types IDX can hold.

  >>> import tempfile
  >>> tmp = tempfile.TemporaryDirectory()
  >>> path = os.path.join(tmp.name, "labels-idx1-ubyte.gz")
  >>> write_idx(path, np.array([3, 1, 4], np.uint8))
  >>> read_idx(path)
  array([3, 1, 4], dtype=uint8)
  >>> tmp.cleanup()
  """
  array = np.asarray(array)
  codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
  if array.dtype.newbyteorder("=") not in codes:
    raise DataError(f"cannot write dtype {array.dtype} as IDX; expected one of "
                    f"{_describe_idx_types()}")
  if array.ndim == 0:
    raise DataError("cannot write a scalar as IDX; expected an array of at least one axis")
  code = codes[array.dtype.newbyteorder("=")]
  data = (bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
          + np.ascontiguousarray(array, IDX_TYPES[code]).tobytes())
  path = os.fspath(path)
  if path.endswith(".gz"):
    data = gzip.compress(data, mtime=0)  # No timestamp: the same array, the same bytes.
  try:  # A link at ``path`` is refused, not written through to a file we did not name.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                 0o666)
  except OSError as e:
    if os.path.islink(path):
      raise DataError(f"{path} is a symbolic link; write_idx writes only to a file of its own "
                      "name (remove the link, or give the path it points to)") from e
    raise
  with os.fdopen(fd, "wb") as f:
    f.write(data)


def _idx_images(path: str) -> np.ndarray:
  """Reads IDX images as float32 ``[N, H, W, C]``: bytes scaled to ``[0, 1]``."""
  images = read_idx(path)
  if images.ndim not in (3, 4):
    raise DataError(f"{path}: images have dims {images.shape}; expected [N, H, W] "
                    "(grey-scale) or [N, H, W, C]")
  if images.dtype == np.uint8:
    images = images.astype(np.float32) / np.float32(255)
  elif not np.issubdtype(images.dtype, np.floating):
    raise DataError(f"{path}: pixels of type {images.dtype}; expected unsigned bytes "
                    "(type 0x08, scaled to [0, 1]) or floats (kept as stored)")
  return images[..., None] if images.ndim == 3 else images


def _idx_labels(path: str) -> np.ndarray:
  labels = read_idx(path)
  if labels.ndim != 1:
    raise DataError(f"{path}: labels have dims {labels.shape}; expected [N]")
  if not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"{path}: labels of type {labels.dtype}; expected integers "
                    "(type 0x08, 0x09, 0x0B or 0x0C)")
  return labels.astype(np.int64)


def _idx_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
  x, y = _idx_images(images_path), _idx_labels(labels_path)
  if len(x) != len(y):
    raise DataError(f"{images_path} holds {len(x)} images but {labels_path} holds {len(y)} "
                    "labels; expected one label per image")
  return x, y


def load_idx(train_images: str | os.PathLike, train_labels: str | os.PathLike,
             test_images: str | os.PathLike | None = None,
             test_labels: str | os.PathLike | None = None, *, val_fraction: float = 0.2,
             test_fraction: float | None = None, seed: int = 0,
             num_classes: int | None = None, name: str | None = None) -> Dataset:
  """Loads MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST, ...), plain or gzip.

  Images are stored as unsigned bytes ``[N, H, W]`` (or ``[N, H, W, C]``) and
  become float32 ``[N, H, W, 1]`` (or ``[N, H, W, C]``) in ``[0, 1]``;
  float images are kept as stored. Labels are integers ``[N]``.

  Args:
    train_images, train_labels: the training files.
    test_images, test_labels: the test files, both or neither. Given, they
      become the sealed test split and the validation split is carved from
      the training files; without them, the training files are split into
      train / val / test.
    val_fraction: share of the training files held out for validation.
    test_fraction: share held out for the test split when no test files are
      given (default 0.2); an error with test files.
    seed: the split's permutation seed.
    num_classes: see :class:`Dataset`.
    name: a label (default: the training images' directory name).

  Returns:
    A :class:`Dataset`.

  Raises:
    DataError: see :func:`read_idx`; also images that are not ``[N, H, W]``
      or ``[N, H, W, C]``, labels that are not integers ``[N]``, images and
      labels of different counts, or train and test images of different sizes.

  >>> import tempfile
  >>> tmp = tempfile.TemporaryDirectory()
  >>> images, labels = (os.path.join(tmp.name, f) for f in ("images", "labels"))
  >>> write_idx(images, np.zeros((50, 28, 28), np.uint8))
  >>> write_idx(labels, np.arange(50, dtype=np.uint8) % 10)
  >>> data = load_idx(images, labels, val_fraction=0.2, test_fraction=0.2)
  >>> data.sizes, data.feature_shape
  ({'train': 30, 'val': 10, 'test': 10}, (28, 28, 1))
  >>> tmp.cleanup()
  """
  if (test_images is None) != (test_labels is None):
    raise DataError("got only one of test_images / test_labels; expected both or neither")
  paths = [os.fspath(p) for p in (train_images, train_labels)]
  name = name or os.path.basename(os.path.dirname(os.path.abspath(paths[0]))) or "idx"
  x, y = _idx_pair(*paths)
  if test_images is None:
    test_fraction = 0.2 if test_fraction is None else test_fraction
    return from_arrays(x, y, val_fraction=val_fraction, test_fraction=test_fraction,
                       seed=seed, num_classes=num_classes, name=name)
  if test_fraction is not None:
    raise DataError(f"test_fraction={test_fraction!r} with test files: they are the test "
                    "split; expected test_fraction=None")
  test_paths = [os.fspath(p) for p in (test_images, test_labels)]
  x_test, y_test = _idx_pair(*test_paths)
  if x_test.shape[1:] != x.shape[1:]:
    raise DataError(f"{test_paths[0]} holds images of shape {x_test.shape[1:]} but "
                    f"{paths[0]} {x.shape[1:]}; expected the same size")
  train_idx, val_idx, _ = split_indices(len(y), val_fraction, 0.0, seed)
  return Dataset(train=(x[train_idx], y[train_idx]), val=(x[val_idx], y[val_idx]),
                 test=(x_test, y_test), num_classes=num_classes, name=name)


# The standard names of MNIST's four files (also Fashion-MNIST's and KMNIST's).
IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def _find_idx(directory: str, stem: str) -> str | None:
  # As distributed (gzip), unpacked, or with a dot (train-images.idx3-ubyte) as some mirrors do.
  dotted = stem.replace("-idx", ".idx")
  for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
    if os.path.isfile(os.path.join(directory, candidate)):
      return os.path.join(directory, candidate)
  return None


def load_idx_dir(directory: str | os.PathLike, **kwargs) -> Dataset:
  """Loads a directory holding MNIST's standard file names (see :func:`load_idx`).

  The directory holds ``train-images-idx3-ubyte`` and
  ``train-labels-idx1-ubyte``, and optionally ``t10k-images-idx3-ubyte``
  and ``t10k-labels-idx1-ubyte`` (the sealed test split); each may end in
  ``.gz``. Nothing is downloaded.

  Args:
    directory: the directory.
    **kwargs: passed to :func:`load_idx` (``val_fraction``, ``seed``, ...).

  >>> import tempfile
  >>> tmp = tempfile.TemporaryDirectory()
  >>> for part, n in (("train", 50), ("t10k", 20)):
  ...   write_idx(f"{tmp.name}/{part}-images-idx3-ubyte.gz", np.zeros((n, 28, 28), np.uint8))
  ...   write_idx(f"{tmp.name}/{part}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
  >>> load_idx_dir(tmp.name, val_fraction=0.2).sizes
  {'train': 40, 'val': 10, 'test': 20}
  >>> tmp.cleanup()
  """
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise DataError(f"no such directory: {directory}; expected one holding "
                    f"{', '.join(IDX_FILES.values())} (each may end in .gz)")
  found = {role: _find_idx(directory, stem) for role, stem in IDX_FILES.items()}
  missing = [IDX_FILES[r] for r in ("train_images", "train_labels") if found[r] is None]
  if (found["test_images"] is None) != (found["test_labels"] is None):
    missing += [IDX_FILES[r] for r in ("test_images", "test_labels") if found[r] is None]
  if missing:
    present = sorted(os.listdir(directory))
    raise DataError(f"{directory}: no {' or '.join(missing)} (or .gz); found "
                    f"{present if present else 'an empty directory'}")
  kwargs.setdefault("name", os.path.basename(os.path.abspath(directory)))
  return load_idx(found["train_images"], found["train_labels"], found["test_images"],
                  found["test_labels"], **kwargs)
