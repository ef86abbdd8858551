"""Datasets: train / validation / test splits, checked once on the host.

A :class:`Dataset` holds three splits: pairs ``(x, y)`` (a :class:`Split`)
or any pytree of NumPy arrays sharing the leading example axis. The test split
is sealed: the tuner never touches it, and :meth:`Dataset.read_test` counts
every read so a run can prove the search did not look at it.

Floats become float32 and integers int32; classification labels are int32 of
shape ``[N]`` in ``[0, num_classes)`` once the objective has checked them
(:meth:`Dataset.check_labels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from vmaptune.errors import DataError
from vmaptune.validation import is_whole

# Labels are int32 on the device: a larger one would wrap around.
_MAX_LABEL = np.iinfo(np.int32).max


class Split(NamedTuple):
  """A split of features and targets: ``x [N, ...]``, ``y [N, ...]`` (a pytree pair)."""
  x: np.ndarray
  y: np.ndarray

  def __len__(self) -> int:
    return len(self.y)


def split_length(split: Any) -> int:
  """Examples in a split: the length of its leaves' leading axis."""
  return len(jax.tree.leaves(split)[0])


def leaf_names(split: Any) -> list[str]:
  """How messages name each leaf of a split: a pair's ``features`` and
  ``targets``, a dict's or tuple's keys (``['tokens']``, ``[0]``), ``array``
  for a single array."""
  if isinstance(split, Split):
    return ["features", "targets"]
  paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(split)[0]]
  return [path or "array" for path in paths]


def _as_structure(name: str, split: Any) -> Any:
  """A pair as a :class:`Split`, a dict or tuple of arrays as itself, anything
  else as one array; errors name the split."""
  # A Split's len() counts its examples; unpacking gives its two fields.
  if isinstance(split, Split) or (isinstance(split, (tuple, list)) and len(split) == 2):
    x, y = split
    return Split(_as_array(name, "features", x), _as_array(name, "targets", y))
  if split is None:
    raise DataError(f"{name} split is None; expected (x, y), a dict or tuple of arrays, "
                    "or one array")
  return _nested(name, "", split, top=True)


def _nested(name: str, path: str, value: Any, top: bool = False) -> Any:
  """Dicts and tuples (and a top-level list) of arrays, nested, as arrays in
  dicts and tuples; a list below the top is an array's rows."""
  if isinstance(value, Mapping):
    if not value:
      raise DataError(f"{name} {path or 'split'} is an empty dict; expected arrays under its keys")
    return {str(k): _nested(name, f"{path}[{k!r}]", v) for k, v in value.items()}
  if isinstance(value, tuple) or (top and isinstance(value, list)):
    if not value:
      raise DataError(f"{name} {path or 'split'} is empty; expected (x, y), a dict or a tuple "
                      "of arrays")
    return tuple(_nested(name, f"{path}[{i}]", v) for i, v in enumerate(value))
  return _as_array(name, path or "array", value)


def _as_split(name: str, split: Any) -> Any:
  """Checks and converts a split (any pytree of arrays sharing the leading example
  axis): real numbers, finite, within float32 and int32; floats become float32,
  integers int32. Errors name the split and the leaf."""
  split = _as_structure(name, split)
  names = leaf_names(split)
  leaves, treedef = jax.tree.flatten(split)
  if isinstance(split, Split) and split.x.ndim < 2:
    raise DataError(f"{name} features have shape {split.x.shape}; expected [N, ...] "
                    "with one row per example")
  for leaf, what in zip(leaves, names, strict=True):
    if leaf.ndim < 1:
      raise DataError(f"{name} {what} have shape {leaf.shape}; expected [N, ...] with one "
                      "row per example")
  lengths = {what: len(leaf) for leaf, what in zip(leaves, names, strict=True)}
  if len(set(lengths.values())) > 1:
    if isinstance(split, Split):
      raise DataError(f"{name} split has {len(split.x)} feature rows but {len(split.y)} "
                      "targets; they must have the same length")
    raise DataError(f"{name} split's arrays have different lengths {lengths}; every leaf "
                    "needs one row per example")
  converted = [_as_leaf(name, what, leaf) for leaf, what in zip(leaves, names, strict=True)]
  if isinstance(split, Split):  # Features are float32, whatever they were stored as.
    converted[0] = converted[0].astype(np.float32)
  return jax.tree.unflatten(treedef, converted)


def _as_leaf(name: str, what: str, x: np.ndarray) -> np.ndarray:
  if 0 in x.shape[1:]:
    raise DataError(f"{name} {what} have shape {x.shape}: no values per example; "
                    "expected [N, ...] with every trailing dimension at least 1")
  if x.dtype.kind not in "biuf":  # Not complex, dates, durations, strings or objects.
    raise DataError(f"{name} {what} have dtype {x.dtype}; expected real numbers")
  if x.dtype.kind in "iu":
    with np.errstate(over="ignore"):
      huge = (x > _MAX_LABEL) | (x < -_MAX_LABEL)
    if huge.any():
      raise DataError(f"{name} {what} hold {int(huge.sum())} integers beyond int32's range "
                      f"(e.g. {x[huge].flat[0].item()!r}); expected magnitudes below 2**31")
    return x.astype(np.int32)
  if x.dtype.kind == "b":
    return x
  with np.errstate(over="ignore", invalid="ignore"):  # Reported below, with the row.
    cast = x.astype(np.float32)
  bad = ~np.isfinite(cast)
  if bad.any():
    stored = ~np.isfinite(x)
    row = int(np.argwhere(stored if stored.any() else bad)[0][0])
    if stored.any():
      raise DataError(f"{name} {what} contain {int(stored.sum())} NaN/inf values "
                      f"(first in row {row}); clean or impute them first")
    raise DataError(f"{name} {what} hold {int(bad.sum())} values beyond float32's range "
                    f"(first in row {row}); expected magnitudes below 3.4e38: rescale them")
  return cast


def _as_array(name: str, what: str, values) -> np.ndarray:
  try:
    return np.asarray(values)
  except (ValueError, TypeError, OverflowError) as e:  # E.g. rows of different lengths.
    raise DataError(f"{name} {what} cannot be made an array ({e}); expected a NumPy array "
                    "or equally long nested lists of numbers") from None


def _as_labels(name: str, y: np.ndarray) -> np.ndarray:
  """Classification labels ``[N]`` as int32 whole numbers; errors name the split."""
  if y.ndim != 1:
    hint = ""
    if y.ndim == 2 and y.shape[1] == 1:
      hint = " (a column: pass y.reshape(-1))"
    elif y.ndim == 2:
      hint = " (one-hot or scores: pass y.argmax(axis=1))"
    raise DataError(f"{name} labels have shape {y.shape}; expected [N] integers{hint}")
  if y.dtype.kind == "f":
    if not np.all(y == np.round(y)):
      raise DataError(f"{name} labels must be whole numbers, got dtype {y.dtype} "
                      "with fractional values")
    huge = np.abs(y) > _MAX_LABEL
    if huge.any():
      raise DataError(f"{name} labels must lie in [0, num_classes) with num_classes at most "
                      f"2**31 (labels are int32) but {int(huge.sum())} do not "
                      f"(e.g. {y[np.argmax(huge)].item()!r})")
  elif y.dtype.kind not in "iu":
    raise DataError(f"{name} labels have dtype {y.dtype}; expected integers")
  return y.astype(np.int64)


def _labels_of(split: Any) -> np.ndarray | None:
  """A pair's ``y`` or a dict's ``"y"``; ``None`` for other splits."""
  if isinstance(split, Split):
    return split.y
  if isinstance(split, dict) and "y" in split and hasattr(split["y"], "ndim"):
    return split["y"]
  return None


def _with_labels(split: Any, labels: np.ndarray) -> Any:
  """``split`` with its labels replaced."""
  return Split(split.x, labels) if isinstance(split, Split) else {**split, "y": labels}


def _inferred_classes(labels: list[np.ndarray]) -> int:
  """``max label + 1`` over non-empty label arrays, at least 2."""
  return max(2, max((int(y.max()) + 1 for y in labels if len(y)), default=2))


def _check_labels(name: str, y: np.ndarray, num_classes: int | None) -> None:
  """Raises if a label is negative or (when given) not below ``num_classes``."""
  out = (y < 0) if num_classes is None else (y < 0) | (y >= num_classes)
  if out.any():
    first = int(y[np.argmax(out)])
    expected = "[0, num_classes)" if num_classes is None else f"[0, {num_classes})"
    raise DataError(f"{name} labels must lie in {expected} but "
                    f"{int(out.sum())} do not (e.g. {first})")


class Dataset:
  """Train, validation and (sealed) test splits.

  A split is a pair ``(x [N, ...], y [N, ...])`` of features and targets (the
  classification and regression objectives read pairs), or any pytree of
  arrays sharing the leading example axis: a dict, a tuple, or one array (the
  language-model objective reads one int array of token sequences ``[N, T]``).
  Every leaf is checked here (real numbers, finite, within float32 and int32;
  the same structure and trailing shapes in every split), and floats become
  float32, integers int32. What the objective needs besides (integer labels
  within ``num_classes``, tokens within the vocabulary) it checks before
  anything compiles.

  Args:
    train: the training split.
    val: the validation split; must not be empty.
    test: the test split; may be empty (no examples, or ``None``).
    num_classes: for classification, the number of classes: the labels are
      then checked here (see :meth:`check_labels`); when omitted, inferred as
      ``max label + 1`` over the train and validation splits, and checked when
      a classification run starts (a test label beyond that is an error, not a
      reason to widen the model).
    name: a label for records and printing.

  >>> rng = np.random.default_rng(0)
  >>> x, y = rng.normal(size=(50, 3)), rng.integers(0, 2, 50)
  >>> data = Dataset(train=(x[:30], y[:30]), val=(x[30:40], y[30:40]),
  ...                test=(x[40:], y[40:]), num_classes=2)
  >>> data.sizes
  {'train': 30, 'val': 10, 'test': 10}
  """

  def __init__(self, train, val, test=None, num_classes: int | None = None,
               name: str = "arrays"):
    if num_classes is not None:
      if not is_whole(num_classes) or not 2 <= num_classes <= _MAX_LABEL + 1:
        raise DataError(f"num_classes={num_classes!r}; expected an integer >= 2 (at most "
                        "2**31: labels are int32)")
      num_classes = int(num_classes)
    train, val = _as_split("train", train), _as_split("val", val)
    if test is None:  # An empty split of the training split's structure.
      test = jax.tree.map(lambda a: a[:0], train)
    test = _as_split("test", test)
    splits = {"train": train, "val": val, "test": test}
    if split_length(train) == 0:
      raise DataError("train split is empty; expected at least one example")
    if split_length(val) == 0:
      raise DataError("validation split is empty; the search scores every lane "
                      "on it, so it needs at least one example")
    structures = {n: jax.tree.structure(s) for n, s in splits.items()}
    if len({str(t) for t in structures.values()}) > 1:
      raise DataError("splits have different structures "
                      f"{ {n: str(t) for n, t in structures.items()} }; expected the same "
                      "arrays in every split")
    names = leaf_names(train)
    for position, what in enumerate(names):
      shapes = {n: jax.tree.leaves(s)[position].shape[1:] for n, s in splits.items()
                if split_length(s)}
      if len(set(shapes.values())) > 1:
        label = "feature" if what == "features" else f"{what}"
        raise DataError(f"splits have different {label} shapes {shapes}")
    self.train = train
    self.val = val
    self._test = test
    self._num_classes = num_classes
    self.name = name
    self.test_reads = 0
    if num_classes is not None:  # Declared a classification: its labels are checked now.
      self.check_labels()

  @property
  def is_pair(self) -> bool:
    """Whether the splits are pairs ``(x, y)`` of features and targets."""
    return isinstance(self.train, Split)

  @property
  def feature_shape(self) -> tuple[int, ...]:
    """Shape of one example's features (a pair's ``x``; else the first leaf), e.g. ``(8, 8, 1)``."""
    first = self.train.x if self.is_pair else jax.tree.leaves(self.train)[0]
    return tuple(first.shape[1:])

  @property
  def num_classes(self) -> int | None:
    """The number of classes: as given, or ``max label + 1`` over the train and
    validation splits' integer labels (a pair's ``y`` or a dict's ``"y"``, at
    least 2); ``None`` for splits without integer labels ``[N]``."""
    if self._num_classes is not None:
      return self._num_classes
    labels = [_labels_of(s) for s in (self.train, self.val)]
    if any(y is None or y.ndim != 1 or y.dtype.kind not in "iu" for y in labels):
      return None
    return _inferred_classes(labels)

  def check_labels(self) -> None:
    """Checks every split holds classification labels ``[N]`` (a pair's ``y`` or
    a dict's ``"y"``): whole numbers in ``[0, num_classes)`` (the test split too,
    without counting a read), and makes them int32.

    Raises:
      DataError: naming the split and the bad labels.
    """
    splits = self.splits_for_checks()
    labels = {}
    for n, s in splits.items():
      if _labels_of(s) is None:
        raise DataError(f"{n} split is {type(s).__name__}; classification takes pairs (x, y) "
                        "or dicts with 'x' and 'y' of features and integer labels")
      labels[n] = _as_labels(n, _labels_of(s))
    num_classes = self._num_classes
    if num_classes is None:
      for n, y in labels.items():
        _check_labels(n, y, None)
      # Inferred from the splits the search may read: the test split must not shape it.
      num_classes = _inferred_classes([labels["train"], labels["val"]])
    for n, y in labels.items():
      _check_labels(n, y, num_classes)
    self.train, self.val, self._test = (_with_labels(splits[n], labels[n].astype(np.int32))
                                        for n in ("train", "val", "test"))

  @property
  def sizes(self) -> dict[str, int]:
    return {n: split_length(s) for n, s in self.splits_for_checks().items()}

  def splits_for_checks(self) -> dict[str, Any]:
    """``{"train", "val", "test"}`` splits, for checks of their values only: the
    test split's read is not counted, and nothing may train or score on it."""
    return {"train": self.train, "val": self.val, "test": self._test}

  def test_structure(self) -> Any:
    """The test split's shapes and dtypes (a pytree of ``jax.ShapeDtypeStruct``
    ``[N, ...]``), for compiling the programs that will score it; its values
    are not read, so this is not counted as a read."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype),
                        self._test)

  def read_test(self) -> Any:
    """Returns the test split and counts the read (see ``test_reads``)."""
    self.test_reads += 1
    return self._test

  def __repr__(self) -> str:
    classes = f", num_classes={self.num_classes}" if self.num_classes is not None else ""
    return (f"Dataset({self.name!r}, sizes={self.sizes}, "
            f"feature_shape={self.feature_shape}{classes})")
