"""Datasets: train / validation / test splits, checked once on the host.

A :class:`Dataset` holds three :class:`Split` s of NumPy arrays. The test split
is sealed: the tuner never touches it, and :meth:`Dataset.read_test` counts
every read so a run can prove the search did not look at it.

Features are float32 of shape ``[N, ...]`` (any trailing shape, e.g. ``[N, 8,
8, 1]`` images); labels are int32 of shape ``[N]`` in ``[0, num_classes)``.
"""

from __future__ import annotations

import os
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
    raise DataError(f"{name} labels have shape {y.shape}; expected [N] integers")
  if len(x) != len(y):
    raise DataError(f"{name} split has {len(x)} feature rows but {len(y)} labels; "
                    "they must have the same length")
  if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
    raise DataError(f"{name} features have dtype {x.dtype}; expected numbers")
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
  val_fraction = _check_fraction("val_fraction", val_fraction)
  test_fraction = _check_fraction("test_fraction", test_fraction)
  if val_fraction + test_fraction >= 1:
    raise DataError(f"val_fraction + test_fraction = {val_fraction + test_fraction:g} "
                    "leaves no training data; expected a sum below 1")
  x, y = np.asarray(x), np.asarray(y)
  if len(x) != len(y):
    raise DataError(f"x has {len(x)} rows but y has {len(y)} labels; "
                    "they must have the same length")
  n = len(y)
  order = np.random.default_rng(seed).permutation(n)
  n_test = int(round(test_fraction * n))
  n_val = int(round(val_fraction * n))
  test_idx, val_idx, train_idx = np.split(order, [n_test, n_test + n_val])
  if n_val == 0:
    raise DataError(f"val_fraction={val_fraction:g} of {n} examples gives an empty "
                    "validation split; raise val_fraction")
  return Dataset(train=(x[train_idx], y[train_idx]), val=(x[val_idx], y[val_idx]),
                 test=(x[test_idx], y[test_idx]), num_classes=num_classes, name=name)


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
