"""Whole-number and categorical distributions: :class:`IntUniform` and :class:`Choice`.

An :class:`IntUniform` is traced by default (a whole number per lane, fed as
float32) or structural; a :class:`Choice` is always structural: each
combination of structural values is a *bucket*, its own compiled population
(see :mod:`vmaptune.space.structural`). A categorical parameter narrows to the
categories found among the kept configurations.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from vmaptune.errors import SpaceError
from vmaptune.space.distributions import Distribution, freeze, json_value
from vmaptune.validation import is_whole


@dataclasses.dataclass(frozen=True)
class IntUniform(Distribution):
  """Integers in ``[low, high]`` (both included), uniform or log-uniform.

  Each integer ``k`` owns the cell ``[k - 1/2, k + 1/2]``: values are drawn
  uniformly over ``[low - 1/2, high + 1/2]`` in the distribution's scale and
  rounded (as Optuna's ``IntDistribution`` does), so on a linear scale every
  integer is equally likely and on a log scale (``log=True``, ``low >= 1``)
  each decade is.

  A traced integer (the default) reaches the trainer as a float32 ``[P]``
  array like any traced number (e.g. a count read by an optimizer factory).
  A structural one (``structural=True``) is a static value such as a depth
  or a width: the tuner trains one population per value, so keep such ranges
  short (or use :class:`Choice` over a few values).

  Attributes:
    low, high: the smallest and largest integer (``low <= high``).
    log: sample and narrow in ``log(value)``; needs ``low >= 1``.
    structural: a static value (model field or batch size), not a traced one.

  >>> IntUniform(1, 4, structural=True).options()
  (1, 2, 3, 4)
  >>> IntUniform(16, 512, log=True).describe()
  '[16, 512] int log'
  """

  low: int
  high: int
  log: bool = False
  structural: bool = False

  @property
  def scale_name(self) -> str:
    return "log" if self.log else "linear"

  def _to_scale(self, values: Any) -> np.ndarray:
    values = np.asarray(values, np.float64)
    return np.log(values) if self.log else values

  def _from_scale(self, values: Any) -> np.ndarray:
    values = np.asarray(values, np.float64)
    return np.exp(values) if self.log else values

  def _cells(self) -> tuple[float, float]:
    """``[low - 1/2, high + 1/2]`` in the distribution's scale."""
    lo, hi = self._to_scale([self.low - 0.5, self.high + 0.5])
    return float(lo), float(hi)

  def check(self, name: str) -> None:
    for bound in ("low", "high"):
      value = getattr(self, bound)
      if not is_whole(value):
        raise SpaceError(f"parameter {name!r}: IntUniform {bound}={value!r} is not a whole "
                         "number; expected an int")
    for flag in ("log", "structural"):
      if not isinstance(getattr(self, flag), bool):
        raise SpaceError(f"parameter {name!r}: IntUniform {flag}={getattr(self, flag)!r}; "
                         "expected True or False")
    if not self.low <= self.high:
      raise SpaceError(f"parameter {name!r}: IntUniform(low={self.low!r}, high={self.high!r}) "
                       "needs low <= high")
    if self.log and self.low < 1:
      raise SpaceError(f"parameter {name!r}: IntUniform low={self.low!r} must be >= 1 for a "
                       "log scale (log=True)")

  def _rounded(self, scaled: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(self._from_scale(scaled)), self.low, self.high)

  def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draws ``size`` integers in ``[low, high]``.

    Returns:
      ``[size]``: int64 if structural, else float32 (whole numbers, traced).
    """
    values = self._rounded(rng.uniform(*self._cells(), size=size))
    return values.astype(np.int64 if self.structural else np.float32)

  def narrowed(self, kept: np.ndarray, margin: float, bounds: IntUniform) -> IntUniform:
    """The integers within the span of ``kept`` widened by ``margin``.

    As for :meth:`Continuous.narrowed`, each side is widened by ``margin``
    times the current width (of ``[low - 1/2, high + 1/2]``, in this
    distribution's scale); the result is rounded inwards to integers, always
    holds every kept value, and never leaves ``bounds``.

    Args:
      kept: the kept configurations' values ``[K]``, K >= 1 (whole numbers).
      margin: fraction of the current width added to each side.
      bounds: the original distribution.
    """
    kept = np.asarray(kept, np.float64)
    lo, hi = self._cells()
    pad = margin * (hi - lo)
    smallest, largest = int(np.rint(kept.min())), int(np.rint(kept.max()))
    below, above = self._from_scale(self._to_scale([smallest, largest]) + [-pad, pad])
    # The tolerance keeps an integer that exp(log(k)) misses by an ulp.
    low = max(bounds.low, min(math.ceil(below - 1e-9), smallest))
    high = min(bounds.high, max(math.floor(above + 1e-9), largest))
    return dataclasses.replace(self, low=low, high=high)

  def perturbed(self, value: float, rng: np.random.Generator, factor: float) -> float:
    """``value`` moved up or down (at random) by a step as in
    :meth:`Continuous.perturbed`, rounded, and by at least one integer while
    the range allows; a traced integer's explore move."""
    if self.structural:
      raise TypeError("a structural parameter cannot change during a run")
    lo, hi = self._cells()
    step = math.log(factor) if self.log else (factor - 1) * (hi - lo)
    direction = rng.choice((-1.0, 1.0))
    moved = int(self._rounded(self._to_scale(value) + direction * step))
    if moved == round(value):
      moved = int(np.clip(round(value) + direction, self.low, self.high))
    return float(moved)

  def to_unit(self, values: np.ndarray) -> np.ndarray:
    """Each integer at the centre of its cell ``[k - 1/2, k + 1/2]`` (see the
    class docstring), as a position in ``[0, 1]``."""
    if self.structural:
      return super().to_unit(values)
    lo, hi = self._cells()
    return np.clip((self._to_scale(values) - lo) / (hi - lo), 0.0, 1.0)

  def from_unit(self, unit: np.ndarray) -> np.ndarray:
    if self.structural:
      return super().from_unit(unit)
    lo, hi = self._cells()
    return self._rounded(lo + np.clip(unit, 0.0, 1.0) * (hi - lo)).astype(np.float32)

  def options(self) -> tuple:
    if not self.structural:
      return super().options()
    return tuple(range(self.low, self.high + 1))

  def value(self, raw: Any) -> int:
    return int(np.rint(raw))

  def width(self) -> float:
    """Width of ``[low - 1/2, high + 1/2]`` in this distribution's scale."""
    lo, hi = self._cells()
    return hi - lo

  def describe(self) -> str:
    return (f"[{self.low}, {self.high}] int {self.scale_name}"
            + (", structural" if self.structural else ""))

  def to_dict(self) -> dict[str, Any]:
    return {"type": "IntUniform", "low": int(self.low), "high": int(self.high),
            "log": self.log, "structural": self.structural}


def _check_option(name: str, value: Any) -> None:
  if isinstance(value, tuple):
    for item in value:
      _check_option(name, item)
  elif isinstance(value, float) and not math.isfinite(value):
    raise SpaceError(f"parameter {name!r}: Choice value {value!r} is not finite")
  elif value is not None and not isinstance(value, (bool, int, float, str)):
    raise SpaceError(
        f"parameter {name!r}: Choice value {value!r} of type {type(value).__name__} is not "
        "a bool, int, float, str, None or a tuple of them; values are recorded as JSON "
        "and keyed on, so name things (e.g. 'relu') and map the names in the model")


@dataclasses.dataclass(frozen=True)
class Choice(Distribution):
  """One of a few values (categories), e.g. widths, activation names, batch sizes.

  Always structural: each value is static in the compiled program, so the
  tuner trains one population per combination of structural values and
  narrows a Choice to the categories found among the kept configurations. Values may
  be bools, ints, floats, strings, ``None``, or tuples of them (lists are
  turned into tuples); they must differ from each other (``1``, ``1.0`` and
  ``True`` are equal in Python, so at most one of them).

  Attributes:
    values: the categories, in order; order decides the order of buckets.

  >>> Choice([32, 64, 128]).describe()
  '{32, 64, 128} choice'
  >>> Choice(["relu", "tanh"]).narrowed(np.array(["tanh"], object), 0.1, None)
  Choice(values=('tanh',))
  """

  values: tuple
  structural = True

  def __post_init__(self):
    if isinstance(self.values, np.ndarray):
      object.__setattr__(self, "values", self.values.tolist())
    if isinstance(self.values, (list, tuple)):
      object.__setattr__(self, "values", freeze(self.values))

  def check(self, name: str) -> None:
    values = self.values
    if isinstance(values, (str, bytes)) or not isinstance(values, tuple):
      raise SpaceError(f"parameter {name!r}: Choice values={values!r} is a "
                       f"{type(values).__name__}; expected a list or tuple of values, "
                       "e.g. Choice(['relu', 'tanh'])")
    if not values:
      raise SpaceError(f"parameter {name!r}: Choice values=() is empty; expected at least "
                       "one value")
    for value in values:
      _check_option(name, value)
    for i, a in enumerate(values):
      for b in values[:i]:
        if a == b:
          raise SpaceError(f"parameter {name!r}: Choice values {b!r} and {a!r} are equal; "
                           "every value must differ")

  def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draws ``size`` values uniformly.

    Returns:
      object array ``[size]`` of the values themselves.
    """
    picked = np.empty(size, object)
    for i, index in enumerate(rng.integers(len(self.values), size=size)):
      picked[i] = self.values[index]
    return picked

  def narrowed(self, kept: np.ndarray, margin: float, bounds: Any) -> Choice:
    """The categories among ``kept`` (values ``[K]``, K >= 1), in this order.

    ``margin`` does not apply: a category either appears among the kept
    lanes or is dropped.
    """
    present = set(kept.tolist() if isinstance(kept, np.ndarray) else kept)
    values = tuple(v for v in self.values if v in present)
    if not values:
      raise ValueError(f"none of the kept values {sorted(map(repr, present))} is among "
                       f"{self.values}")
    return Choice(values)

  def options(self) -> tuple:
    return self.values

  def value(self, raw: Any) -> Any:
    return freeze(raw)

  def describe(self) -> str:
    return "{" + ", ".join(map(repr, self.values)) + "} choice"

  def to_dict(self) -> dict[str, Any]:
    return {"type": "Choice", "values": json_value(self.values)}
