"""Datasets: train / validation / test splits, checked once on the host.

A :class:`Dataset` holds three :class:`Split` s of NumPy arrays. The test split
is sealed: the tuner never touches it, and :meth:`Dataset.read_test` counts
every read so a run can prove the search did not look at it.

Features are float32 of shape ``[N, ...]`` (any trailing shape, e.g. ``[N, 8,
8, 1]`` images); labels are int32 of shape ``[N]`` in ``[0, num_classes)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vmaptune.errors import DataError
from vmaptune.validation import is_whole

# Labels are int32 on the device: a larger one would wrap around.
_MAX_LABEL = np.iinfo(np.int32).max


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
  x, y = _as_array(name, "features", x), _as_array(name, "labels", y)
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
  if x.dtype.kind not in "biuf":  # Not complex, dates, durations, strings or objects.
    raise DataError(f"{name} features have dtype {x.dtype}; expected real numbers")
  with np.errstate(over="ignore", invalid="ignore"):  # Reported below, with the row.
    cast = x.astype(np.float32)
  bad = ~np.isfinite(cast)
  if bad.any():
    stored = ~np.isfinite(x)
    row = int(np.argwhere(stored if stored.any() else bad)[0][0])
    if stored.any():
      raise DataError(f"{name} features contain {int(stored.sum())} NaN/inf values "
                      f"(first in row {row}); clean or impute them first")
    raise DataError(f"{name} features hold {int(bad.sum())} values beyond float32's range "
                    f"(first in row {row}); expected magnitudes below 3.4e38: rescale them")
  if y.dtype.kind == "f":
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
      raise DataError(f"{name} labels must be whole numbers, got dtype {y.dtype} "
                      "with fractional or non-finite values")
  elif y.dtype.kind not in "iu":
    raise DataError(f"{name} labels have dtype {y.dtype}; expected integers")
  with np.errstate(over="ignore"):  # float16 holds no such bound, nor a label beyond it.
    huge = (y > _MAX_LABEL) | (y < -_MAX_LABEL)
  if huge.any():
    raise DataError(f"{name} labels must lie in [0, num_classes) with num_classes at most "
                    f"2**31 (labels are int32) but {int(huge.sum())} do not "
                    f"(e.g. {y[np.argmax(huge)].item()!r})")
  return Split(cast, y.astype(np.int64))


def _as_array(name: str, what: str, values) -> np.ndarray:
  try:
    return np.asarray(values)
  except (ValueError, TypeError, OverflowError) as e:  # E.g. rows of different lengths.
    raise DataError(f"{name} {what} cannot be made an array ({e}); expected a NumPy array "
                    "or equally long nested lists of numbers") from None


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
      if not is_whole(num_classes) or not 2 <= num_classes <= _MAX_LABEL + 1:
        raise DataError(f"num_classes={num_classes!r}; expected an integer >= 2 (at most "
                        "2**31: labels are int32)")
      num_classes = int(num_classes)
    splits = {n: _as_split(n, s)
              for n, s in (("train", train), ("val", val), ("test", test))}
    if num_classes is None:
      for n, s in splits.items():
        _check_labels(n, s.y, None)
      # Inferred from the splits the search may read: the test split must not shape it.
      # Both train and val empty: refused below, with a clearer message than max()'s.
      num_classes = max(2, max((int(s.y.max()) + 1 for n, s in splits.items()
                                if len(s) and n != "test"), default=2))
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
