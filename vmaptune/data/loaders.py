"""Loaders that split arrays into a :class:`~vmaptune.data.dataset.Dataset`:
your own arrays, ``.npz`` files, the embedded 8x8 digits and diabetes sets, a
synthetic teacher task, and channel layouts made explicit (:func:`as_images`).

Image loaders return channel-last ``[N, H, W, C]``; arrays of your own keep
the shape you give (a ``[N, H, W]`` image and a ``[N, T, F]`` sequence look
alike), and :func:`as_images` converts ``[N, H, W]`` or ``[N, C, H, W]``.
Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import math
import os
import zipfile
import zlib
from typing import IO

import numpy as np

from vmaptune.data.dataset import Dataset
from vmaptune.data.streams import read_at_most
from vmaptune.errors import DataError
from vmaptune.validation import fraction, whole_number


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
  try:
    x, y = np.asarray(x), np.asarray(y)
  except (ValueError, TypeError, OverflowError) as e:  # E.g. rows of different lengths.
    raise DataError(f"x or y cannot be made an array ({e}); expected NumPy arrays or equally "
                    "long nested lists of numbers") from None
  if x.ndim == 0 or y.ndim == 0:
    raise DataError(f"x has shape {x.shape} and y {y.shape}; expected features [N, ...] "
                    "and labels [N]")
  if len(x) != len(y):
    raise DataError(f"x has {len(x)} rows but y has {len(y)} labels; "
                    "they must have the same length")
  train_idx, val_idx, test_idx = split_indices(len(y), val_fraction, test_fraction, seed)
  return Dataset(train=(x[train_idx], y[train_idx]), val=(x[val_idx], y[val_idx]),
                 test=(x[test_idx], y[test_idx]), num_classes=num_classes, name=name)


def split_indices(n: int, val_fraction: float, test_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Splits ``range(n)`` at random into train / val / test index arrays."""
  val_fraction = fraction("val_fraction", val_fraction, high_open=True, error=DataError)
  test_fraction = fraction("test_fraction", test_fraction, high_open=True, error=DataError)
  seed = whole_number("seed", seed, 0, error=DataError)
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
  images, target = digits_arrays()
  x = (images / 16.0).astype(np.float32)[..., None]
  return from_arrays(x, target, val_fraction=val_fraction,
                     test_fraction=test_fraction, seed=seed, num_classes=10,
                     name="digits")


def digits_arrays(count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits as arrays, ``(images float64 [N, 8, 8] of 0 to 16, labels
  int [N])``: all 1,797, or the first ``count``.

  Read straight from the file scikit-learn ships (``sklearn/datasets/data/
  digits.csv.gz``: 64 pixels then the label per row, as ``load_digits`` reads it)
  when it is where that version keeps it: importing scikit-learn takes 1.5 to 2 s
  here, as long as the default experiment's other start-up together. Otherwise
  through ``load_digits``."""
  spec = importlib.util.find_spec("sklearn")
  folders = list(spec.submodule_search_locations or []) if spec else []
  for folder in folders:
    path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
      table = np.loadtxt(path, delimiter=",", max_rows=count)
      return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
  from sklearn.datasets import load_digits  # Imported lazily: only this loader needs it.

  raw = load_digits()
  return raw.images[:count], raw.target[:count]


def diabetes(*, val_fraction: float = 0.2, test_fraction: float = 0.2,
             seed: int = 0) -> Dataset:
  """The diabetes regression set that ships with scikit-learn (no download).

  442 patients, 10 features (age, sex, body-mass index, blood pressure and six
  blood serum measurements), and a real target: disease progression one year
  later. Features and target are standardised with the mean and standard
  deviation of the training split only (no statistic of the validation or test
  examples leaks into training), so a model that predicts the training mean
  scores a mean squared error of about 1.

  Returns:
    A :class:`Dataset` of pairs: features ``[N, 10]`` float32, targets ``[N]``
    float32. Its ``target_mean`` and ``target_std`` attributes turn a
    standardised prediction back into the original units.
  """
  from sklearn.datasets import load_diabetes  # Imported lazily: only this loader needs it.

  x, y = load_diabetes(return_X_y=True, scaled=False)
  train_idx, val_idx, test_idx = split_indices(len(y), val_fraction, test_fraction, seed)
  x_mean, x_std = x[train_idx].mean(axis=0), x[train_idx].std(axis=0)
  y_mean, y_std = y[train_idx].mean(), y[train_idx].std()
  x = ((x - x_mean) / np.where(x_std > 0, x_std, 1.0)).astype(np.float32)
  y = ((y - y_mean) / y_std).astype(np.float32)
  data = Dataset(train=(x[train_idx], y[train_idx]), val=(x[val_idx], y[val_idx]),
                 test=(x[test_idx], y[test_idx]), name="diabetes")
  data.target_mean, data.target_std = float(y_mean), float(y_std)
  return data


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

  Raises:
    DataError: a missing or damaged file, arrays of neither layout, an array
      of Python objects (a pickle, never loaded), or arrays the
      :class:`Dataset` checks refuse.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise DataError(f"no such .npz file: {path}")
  name = os.path.splitext(os.path.basename(path))[0]
  with _open_npz(path) as archive:
    members = _npz_members(archive)
    keys = set(members)

    def read(key: str) -> np.ndarray:
      return _npz_array(archive, members[key], f"{path}: array {key!r}")

    if {"x_train", "y_train", "x_val", "y_val"} <= keys:
      if ("x_test" in keys) != ("y_test" in keys):
        raise DataError(f"{path}: has only one of x_test / y_test")
      x_train = read("x_train")
      test = ((read("x_test"), read("y_test")) if "x_test" in keys else
              (np.zeros((0,) + x_train.shape[1:], np.float32), np.zeros(0, np.int32)))
      return Dataset(train=(x_train, read("y_train")), val=(read("x_val"), read("y_val")),
                     test=test, num_classes=num_classes, name=name)
    if {"x", "y"} <= keys:
      return from_arrays(read("x"), read("y"), val_fraction=val_fraction,
                         test_fraction=test_fraction, seed=seed,
                         num_classes=num_classes, name=name)
  raise DataError(f"{path}: arrays {sorted(keys)}; expected x, y or "
                  "x_train, y_train, x_val, y_val[, x_test, y_test]")


# A .npz is a zip archive of .npy files. It is read here rather than by np.load, whose reader
# allocates the shape a header declares before reading the data, so that a damaged header
# is refused before anything is allocated, and every failure becomes a DataError.
_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def _open_npz(path: str) -> zipfile.ZipFile:
  try:
    return zipfile.ZipFile(path)
  except Exception as e:  # zipfile raises many types on what is not a sound archive.
    try:
      with open(path, "rb") as f:
        one_array = f.read(len(_NPY_MAGIC)) == _NPY_MAGIC
    except OSError:
      one_array = False
    if one_array:
      raise DataError(f"{path}: a .npy file, one array; expected a .npz archive of arrays "
                      "(np.savez(path, x=..., y=...))") from None
    raise DataError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e}); "
                    "expected a zip archive of arrays as np.savez writes") from None


def _npz_members(archive: zipfile.ZipFile) -> dict[str, str]:
  """``{key: member name}`` as np.load names them: ``x.npy`` is ``x``; an exact name wins."""
  names = archive.namelist()
  members = {name[:-4]: name for name in names if name.endswith(".npy")}
  members.update((name, name) for name in names if not name.endswith(".npy"))
  return members


def _npz_array(archive: zipfile.ZipFile, member: str, where: str) -> np.ndarray:
  """One ``.npy`` member as an array ``[...]`` of its stored shape and dtype.

  The member is decompressed piece by piece and never past the size its header
  declares (a member that expands to gigabytes is refused after one byte more).

  Raises:
    DataError: a damaged member, a header that is not .npy's or declares another
      size than the data holds, or Python objects (a pickle); ``where`` starts the message.
  """
  try:
    with archive.open(member) as stream:
      shape, fortran_order, dtype = _npy_header(stream, where)
      count = math.prod(shape)
      expected = count * dtype.itemsize
      raw = read_at_most(stream, expected + 1)  # One byte more tells a member too long.
  except DataError:
    raise
  except Exception as e:  # zipfile, zlib, bz2 and lzma raise their own types on damage.
    raise DataError(f"{where} cannot be read ({type(e).__name__}: {e}); expected an intact "
                    "archive as np.savez writes") from None
  if len(raw) != expected:
    problem, holds = (("truncated", f"{len(raw)}") if len(raw) < expected else
                      ("too long", f"more (reading stopped after {len(raw)})"))
    raise DataError(f"{where} is {problem}: its header declares shape {shape} of {dtype}, "
                    f"{expected} bytes of data, but it holds {holds}")
  try:
    values = np.frombuffer(raw, dtype, count=count)
    return values.reshape(shape, order="F" if fortran_order else "C")
  except ValueError as e:  # E.g. more axes than NumPy holds, or a zero-sized dtype.
    raise DataError(f"{where}: shape {shape} of {dtype} cannot be held by a NumPy array "
                    f"({e}); expected an array such as [N, ...]") from None


# What reading a damaged member raises (not the .npy parser): told apart from a bad header.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)


def _npy_header(stream: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
  """A ``.npy`` header's shape, order and dtype (the stream is left after it).

  Raises:
    DataError: a header that is not .npy's, a negative size or Python objects.
  """
  try:
    version = np.lib.format.read_magic(stream)
    if version not in _NPY_HEADERS:  # 3.0 is only written for non-Latin-1 field names.
      raise ValueError(f"format version {version[0]}.{version[1]}; expected 1.0 or 2.0")
    shape, fortran_order, dtype = _NPY_HEADERS[version](stream)
  except _ARCHIVE_ERRORS:
    raise
  except Exception as e:  # NumPy's parser (ast, tokenize, dtypes) raises many types on garbage.
    raise DataError(f"{where} is not a valid .npy array ({e}); expected one as np.savez "
                    "writes") from None
  if dtype.hasobject:
    raise DataError(f"{where} holds Python objects (dtype {dtype}), stored as a pickle, "
                    "which is never loaded; expected an array of numbers")
  if any(d < 0 for d in shape):
    raise DataError(f"{where}: its header declares shape {shape}; expected sizes >= 0")
  return shape, fortran_order, dtype


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
