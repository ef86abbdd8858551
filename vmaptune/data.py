"""Datasets: train / validation / test splits, checked once on the host.

A :class:`Dataset` holds three :class:`Split` s of NumPy arrays. The test split
is sealed: the tuner never touches it, and :meth:`Dataset.read_test` counts
every read so a run can prove the search did not look at it.

Features are float32 of shape ``[N, ...]`` (any trailing shape, e.g. ``[N, 8,
8, 1]`` images); labels are int32 of shape ``[N]`` in ``[0, num_classes)``.

Loaders: :func:`from_arrays`, :func:`load_npz`, :func:`load_idx` and
:func:`load_idx_dir` (MNIST-format files), and the embedded :func:`digits`.
Image loaders return channel-last ``[N, H, W, C]``; arrays of your own keep
the shape you give (a ``[N, H, W]`` image and a ``[N, T, F]`` sequence look
alike), and :func:`as_images` converts ``[N, H, W]`` or ``[N, C, H, W]``.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import NamedTuple

import numpy as np


class DataError(ValueError):
  """A dataset is unusable: wrong shapes, bad labels, non-finite features."""


class Split(NamedTuple):
  """One split: features ``x [N, ...]`` float32, labels ``y [N]`` int32."""
  x: np.ndarray
  y: np.ndarray

  def __len__(self) -> int:
    return len(self.y)


def _as_split(name: str, split) -> Split:
  """Converts ``(x, y)`` to a checked :class:`Split`; errors name the split."""
  try:
    x, y = split
  except (TypeError, ValueError):
    raise DataError(f"{name} split must be a pair (x, y), got {type(split).__name__}") from None
  x = np.asarray(x)
  y = np.asarray(y)
  if x.ndim < 2:
    raise DataError(f"{name} features have shape {x.shape}; expected [N, ...] "
                    "with one row per example")
  if y.ndim != 1:
    hint = ""
    if y.ndim == 2 and y.shape[1] == 1:
      hint = " (a column: pass y.reshape(-1))"
    elif y.ndim == 2:
      hint = " (one-hot or scores: pass y.argmax(axis=1))"
    raise DataError(f"{name} labels have shape {y.shape}; expected [N] integers{hint}")
  if len(x) != len(y):
    raise DataError(f"{name} split has {len(x)} feature rows but {len(y)} labels; "
                    "they must have the same length")
  if 0 in x.shape[1:]:
    raise DataError(f"{name} features have shape {x.shape}: no values per example; "
                    "expected [N, ...] with every trailing dimension at least 1")
  if np.issubdtype(x.dtype, np.complexfloating) or not (
      np.issubdtype(x.dtype, np.number) or x.dtype == bool):
    raise DataError(f"{name} features have dtype {x.dtype}; expected real numbers")
  x = x.astype(np.float32)
  bad = ~np.isfinite(x)
  if bad.any():
    row = int(np.argwhere(bad)[0][0])
    raise DataError(f"{name} features contain {int(bad.sum())} NaN/inf values "
                    f"(first in row {row}); clean or impute them first")
  if np.issubdtype(y.dtype, np.floating):
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
      raise DataError(f"{name} labels must be whole numbers, got dtype {y.dtype} "
                      "with fractional or non-finite values")
  elif not np.issubdtype(y.dtype, np.integer):
    raise DataError(f"{name} labels have dtype {y.dtype}; expected integers")
  return Split(x, y.astype(np.int64))


def _check_labels(name: str, y: np.ndarray, num_classes: int | None) -> None:
  """Raises if a label is negative or (when given) not below ``num_classes``."""
  out = (y < 0) if num_classes is None else (y < 0) | (y >= num_classes)
  if out.any():
    first = int(y[np.argmax(out)])
    expected = "[0, num_classes)" if num_classes is None else f"[0, {num_classes})"
    raise DataError(f"{name} labels must lie in {expected} but "
                    f"{int(out.sum())} do not (e.g. {first})")


class Dataset:
  """Train, validation and (sealed) test splits of a classification task.

  Args:
    train: ``(x [N_train, ...], y [N_train])``.
    val: ``(x [N_val, ...], y [N_val])``; must not be empty.
    test: ``(x [N_test, ...], y [N_test])``; may be empty.
    num_classes: number of classes; inferred as ``max label + 1`` over the
      train and validation splits when omitted (a test label beyond that is
      an error, not a reason to widen the model).
    name: a label for records and printing.

  >>> rng = np.random.default_rng(0)
  >>> x, y = rng.normal(size=(50, 3)), rng.integers(0, 2, 50)
  >>> data = Dataset(train=(x[:30], y[:30]), val=(x[30:40], y[30:40]),
  ...                test=(x[40:], y[40:]), num_classes=2)
  >>> data.sizes
  {'train': 30, 'val': 10, 'test': 10}
  """

  def __init__(self, train, val, test, num_classes: int | None = None,
               name: str = "arrays"):
    if num_classes is not None:
      if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
          or num_classes < 2:
        raise DataError(f"num_classes={num_classes!r}; expected an integer >= 2")
      num_classes = int(num_classes)
    splits = {n: _as_split(n, s)
              for n, s in (("train", train), ("val", val), ("test", test))}
    if num_classes is None:
      for n, s in splits.items():
        _check_labels(n, s.y, None)
      # Inferred from the splits the search may read: the test split must not shape it.
      num_classes = max(2, max(int(s.y.max()) + 1 for n, s in splits.items()
                               if len(s) and n != "test"))
    for n, s in splits.items():
      _check_labels(n, s.y, num_classes)
    splits = {n: Split(s.x, s.y.astype(np.int32)) for n, s in splits.items()}
    if len(splits["train"]) == 0:
      raise DataError("train split is empty; expected at least one example")
    if len(splits["val"]) == 0:
      raise DataError("validation split is empty; the search scores every lane "
                      "on it, so it needs at least one example")
    shapes = {n: s.x.shape[1:] for n, s in splits.items() if len(s)}
    if len(set(shapes.values())) > 1:
      raise DataError(f"splits have different feature shapes {shapes}")
    self.train: Split = splits["train"]
    self.val: Split = splits["val"]
    self._test: Split = splits["test"]
    self.num_classes: int = num_classes
    self.name = name
    self.test_reads = 0

  @property
  def feature_shape(self) -> tuple[int, ...]:
    """Shape of one example, e.g. ``(8, 8, 1)``."""
    return tuple(self.train.x.shape[1:])

  @property
  def sizes(self) -> dict[str, int]:
    return {"train": len(self.train), "val": len(self.val), "test": len(self._test)}

  def read_test(self) -> Split:
    """Returns the test split and counts the read (see ``test_reads``)."""
    self.test_reads += 1
    return self._test

  def __repr__(self) -> str:
    return (f"Dataset({self.name!r}, sizes={self.sizes}, "
            f"feature_shape={self.feature_shape}, num_classes={self.num_classes})")


def _check_fraction(name: str, value: float) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
    raise DataError(f"{name}={value!r}; expected a fraction in [0, 1)")
  return float(value)


def from_arrays(x, y, *, val_fraction: float = 0.2, test_fraction: float = 0.2,
                seed: int = 0, num_classes: int | None = None,
                name: str = "arrays") -> Dataset:
  """Splits one labelled array pair at random into train / val / test.

  Args:
    x: features ``[N, ...]``.
    y: integer labels ``[N]``.
    val_fraction: share of examples for validation.
    test_fraction: share of examples for the final test.
    seed: the split's permutation seed.
    num_classes: see :class:`Dataset`.

  Returns:
    A :class:`Dataset` whose splits are disjoint and cover all ``N`` examples.
  """
  x, y = np.asarray(x), np.asarray(y)
  if x.ndim == 0 or y.ndim == 0:
    raise DataError(f"x has shape {x.shape} and y {y.shape}; expected features [N, ...] "
                    "and labels [N]")
  if len(x) != len(y):
    raise DataError(f"x has {len(x)} rows but y has {len(y)} labels; "
                    "they must have the same length")
  train_idx, val_idx, test_idx = _carve(len(y), val_fraction, test_fraction, seed)
  return Dataset(train=(x[train_idx], y[train_idx]), val=(x[val_idx], y[val_idx]),
                 test=(x[test_idx], y[test_idx]), num_classes=num_classes, name=name)


def _carve(n: int, val_fraction: float, test_fraction: float,
           seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Splits ``range(n)`` at random into train / val / test index arrays."""
  val_fraction = _check_fraction("val_fraction", val_fraction)
  test_fraction = _check_fraction("test_fraction", test_fraction)
  if val_fraction + test_fraction >= 1:
    raise DataError(f"val_fraction + test_fraction = {val_fraction + test_fraction:g} "
                    "leaves no training data; expected a sum below 1")
  order = np.random.default_rng(seed).permutation(n)
  n_test = int(round(test_fraction * n))
  n_val = int(round(val_fraction * n))
  if n_val == 0:
    raise DataError(f"val_fraction={val_fraction:g} of {n} examples gives an empty "
                    "validation split; raise val_fraction")
  test_idx, val_idx, train_idx = np.split(order, [n_test, n_test + n_val])
  return train_idx, val_idx, test_idx


def digits(*, val_fraction: float = 0.2, test_fraction: float = 0.2,
           seed: int = 0) -> Dataset:
  """The 8x8 handwritten digits that ship with scikit-learn (no download).

  1,797 grey-scale images, 10 classes; pixel values scaled to ``[0, 1]``.

  Returns:
    A :class:`Dataset` with features ``[N, 8, 8, 1]`` float32.
  """
  from sklearn.datasets import load_digits  # Imported lazily: only this loader needs it.

  raw = load_digits()
  x = (raw.images / 16.0).astype(np.float32)[..., None]
  return from_arrays(x, raw.target, val_fraction=val_fraction,
                     test_fraction=test_fraction, seed=seed, num_classes=10,
                     name="digits")


def teacher(*, n: int = 10_000, features: int = 64, classes: int = 10, hidden: int = 64,
            label_noise: float = 0.0, val_fraction: float = 0.1, test_fraction: float = 0.1,
            seed: int = 0) -> Dataset:
  """A synthetic classification task: Gaussian features labelled by a random
  two-layer teacher network (``argmax(tanh(x W1) W2)``), with a fraction of
  labels replaced at random. Generated here; nothing is downloaded.

  Args:
    n: training examples (the validation and test splits come on top, so
      that ``n`` is the training split's size).
    features, classes, hidden: input width, number of labels, teacher width.
    label_noise: fraction of labels (in every split) replaced uniformly.

  Returns:
    A :class:`Dataset` with features ``[N, features]`` float32.
  """
  if not 0 <= label_noise < 1:
    raise DataError(f"label_noise={label_noise!r}; expected a fraction in [0, 1)")
  rng = np.random.default_rng(seed)
  total = int(round(n / (1 - val_fraction - test_fraction)))
  x = rng.normal(size=(total, features)).astype(np.float32)
  h = np.tanh(x @ rng.normal(size=(features, hidden)) / np.sqrt(features))
  y = np.argmax(h @ rng.normal(size=(hidden, classes)), axis=1)
  noisy = rng.random(total) < label_noise
  y[noisy] = rng.integers(0, classes, noisy.sum())
  return from_arrays(x, y, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                     num_classes=classes, name="teacher")


def load_npz(path: str | os.PathLike, *, val_fraction: float = 0.2,
             test_fraction: float = 0.2, seed: int = 0,
             num_classes: int | None = None) -> Dataset:
  """Loads a ``.npz`` file.

  Two layouts are accepted: ``x_train, y_train, x_val, y_val, x_test, y_test``
  (splits as given; the test pair may be absent), or ``x, y`` (split here by
  :func:`from_arrays` with the given fractions and seed).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise DataError(f"no such .npz file: {path}")
  with np.load(path, allow_pickle=False) as f:
    keys = set(f.files)
    name = os.path.splitext(os.path.basename(path))[0]
    if {"x_train", "y_train", "x_val", "y_val"} <= keys:
      if ("x_test" in keys) != ("y_test" in keys):
        raise DataError(f"{path}: has only one of x_test / y_test")
      test = ((f["x_test"], f["y_test"]) if "x_test" in keys else
              (np.zeros((0,) + f["x_train"].shape[1:], np.float32), np.zeros(0, np.int32)))
      return Dataset(train=(f["x_train"], f["y_train"]), val=(f["x_val"], f["y_val"]),
                     test=test, num_classes=num_classes, name=name)
    if {"x", "y"} <= keys:
      return from_arrays(f["x"], f["y"], val_fraction=val_fraction,
                         test_fraction=test_fraction, seed=seed,
                         num_classes=num_classes, name=name)
  raise DataError(f"{path}: arrays {sorted(keys)}; expected x, y or "
                  "x_train, y_train, x_val, y_val[, x_test, y_test]")


def as_images(x, layout: str) -> np.ndarray:
  """Returns images channel-last, ``[N, H, W, C]``, as the reference CNN and
  Flax's convolutions expect; vmaptune never guesses a layout.

  Args:
    x: ``[N, H, W]`` for ``layout="NHW"`` (grey-scale: a channel axis of 1 is
      added), ``[N, C, H, W]`` for ``"NCHW"`` (e.g. PyTorch's; transposed), or
      ``[N, H, W, C]`` for ``"NHWC"`` (returned as is).
    layout: the layout ``x`` is in.

  Returns:
    ``[N, H, W, C]``, the same values and dtype.

  >>> as_images(np.zeros((5, 3, 28, 28)), "NCHW").shape
  (5, 28, 28, 3)
  """
  x = np.asarray(x)
  axes = {"NHW": 3, "NCHW": 4, "NHWC": 4}
  if layout not in axes:
    raise DataError(f"layout={layout!r}; expected one of {list(axes)}")
  if x.ndim != axes[layout]:
    raise DataError(f"images have shape {x.shape}, {x.ndim} axes; layout {layout!r} "
                    f"expects {axes[layout]} ({', '.join(layout)})")
  if layout == "NHW":
    return x[..., None]
  if layout == "NCHW":
    return np.transpose(x, (0, 2, 3, 1))
  return x


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
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == _GZIP_MAGIC:
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # Truncated or corrupt archives.
      raise DataError(f"{path}: a damaged gzip file ({e}); expected a complete .gz of an "
                      "IDX file") from None
  if len(raw) < 4 or raw[:2] != b"\0\0":
    found = f"magic number 0x{raw[:4].hex().upper()}" if raw else "empty file"
    raise DataError(f"{path}: {found}; expected IDX's magic number 0x0000TTNN: two zero "
                    "bytes, a type code TT and the number of dimensions NN (e.g. 0x00000803 "
                    "for uint8 images [N, H, W], 0x00000801 for uint8 labels [N])")
  code, ndim = raw[2], raw[3]
  if code not in IDX_TYPES:
    raise DataError(f"{path}: type code 0x{code:02X} in the magic number is unknown; "
                    f"expected one of {_describe_idx_types()}")
  if ndim == 0:
    raise DataError(f"{path}: the magic number declares 0 dimensions; expected at least 1")
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"{path}: truncated header: {ndim} dimension sizes need {header} bytes, "
                    f"the file holds {len(raw)}")
  dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  dtype = IDX_TYPES[code]
  expected = math.prod(dims) * dtype.itemsize
  found = len(raw) - header
  if found != expected:
    problem = "truncated" if found < expected else "too long"
    raise DataError(f"{path}: {problem}: the header declares dims {dims} of "
                    f"{dtype.newbyteorder('=').name}, {expected} bytes of data, but the file "
                    f"holds {found}")
  values = np.frombuffer(raw, dtype, offset=header).reshape(dims)
  return values.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array) -> None:
  """Writes ``array`` as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

  Args:
    path: the file to write.
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
  with open(path, "wb") as f:
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
  train_idx, val_idx, _ = _carve(len(y), val_fraction, 0.0, seed)
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
