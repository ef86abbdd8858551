"""Distributions of hyperparameter values: the base class and the continuous ones.

A distribution samples values for a population of lanes, narrows its range
to kept values (in its own scale), and describes itself for records. Traced
distributions give a number per lane, fed to the compiled program as a
float32 ``[P]`` array; structural ones (see :mod:`vmaptune.space.discrete`) give
static values that change the program itself.

Narrowing works in each distribution's own scale: a log-uniform parameter is
narrowed in log space, so a kept span of ``[1e-4, 1e-2]`` is two decades wide
whatever its absolute size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from vmaptune.errors import SpaceError

# A narrowed range is never narrower than this fraction of the original range
# (in the parameter's scale), so narrowing cannot collapse a range to a point.
MIN_WIDTH_FRACTION = 1e-3


class Distribution:
  """What every distribution provides; see the subclasses.

  Attributes:
    structural: whether a value changes the compiled program (a shape, a
      name) rather than flowing through it as a traced number.
  """

  structural = False

  def check(self, name: str) -> None:
    """Raises :class:`SpaceError` naming ``name`` if the distribution is unusable."""
    raise NotImplementedError

  def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draws ``size`` values: float32 ``[size]`` for traced parameters; int64
    or object ``[size]`` (the values themselves) for structural ones."""
    raise NotImplementedError

  def narrowed(self, kept: np.ndarray, margin: float, bounds: Any) -> Distribution:
    """The distribution the next round samples, given the kept configurations' values ``[K]``."""
    raise NotImplementedError

  def perturbed(self, value: Any, rng: np.random.Generator, factor: float) -> Any:
    """``value`` moved one step (population-based training's explore move)."""
    raise TypeError(f"{type(self).__name__} values cannot be perturbed")

  def to_unit(self, values: np.ndarray) -> np.ndarray:
    """A traced parameter's values ``[N]`` as positions in ``[0, 1]`` of its
    range, in its own scale (float64 ``[N]``): where model-based samplers work."""
    raise TypeError(f"{type(self).__name__} is structural; it has no unit scale")

  def from_unit(self, unit: np.ndarray) -> np.ndarray:
    """Positions ``[N]`` in ``[0, 1]`` (clipped) as values: float32 ``[N]``
    inside the range (whole numbers for an integer); inverts :meth:`to_unit`."""
    raise TypeError(f"{type(self).__name__} is structural; it has no unit scale")

  def options(self) -> tuple:
    """Every value a structural parameter can take, in order."""
    raise TypeError(f"{type(self).__name__} is not structural; it has no finite options")

  def value(self, raw: Any) -> Any:
    """One sampled value as a plain Python value for records (float, int, str, ...)."""
    return float(raw)

  def describe(self) -> str:
    raise NotImplementedError

  def to_dict(self) -> dict[str, Any]:
    """A JSON-ready description, ``{"type": class name, ...fields}``."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Continuous(Distribution):
  """A float range ``[low, high]`` sampled uniformly in some scale.

  Subclasses set the scale through :meth:`to_scale` / :meth:`from_scale`.
  Ranges are checked when a :class:`Space` is built, so the error can name the
  parameter.
  """

  low: float
  high: float

  scale_name = "linear"

  def to_scale(self, values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)

  def from_scale(self, values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)

  def check(self, name: str) -> None:
    """Raises :class:`SpaceError` naming ``name`` if the range is unusable."""
    kind = type(self).__name__
    for bound in ("low", "high"):
      value = getattr(self, bound)
      if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise SpaceError(
            f"parameter {name!r}: {kind} {bound}={value!r} is not a number; "
            "expected a finite float")
      if not math.isfinite(value):
        raise SpaceError(
            f"parameter {name!r}: {kind} {bound}={value!r} is not finite; "
            "expected a finite float")
    if not self.low < self.high:
      raise SpaceError(
          f"parameter {name!r}: {kind}(low={self.low!r}, high={self.high!r}) "
          "needs low < high")

  def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draws ``size`` values, uniform in this distribution's scale.

    Returns:
      float32 array of shape ``[size]``, every value inside ``[low, high]``.
    """
    lo, hi = self.to_scale(np.array([self.low, self.high]))
    values = self.from_scale(rng.uniform(lo, hi, size=size))
    return np.clip(values, self.low, self.high).astype(np.float32)

  def narrowed(self, kept: np.ndarray, margin: float,
               bounds: Continuous) -> Continuous:
    """The span of ``kept`` widened by ``margin`` and clipped to ``bounds``.

    Args:
      kept: values of the lanes that survived ranking, shape ``[K]``, K >= 1.
      margin: each side is widened by ``margin`` times the width of this
        (the current) range, measured in this distribution's scale.
      bounds: the range of the original space; the result never leaves it,
        and is never narrower than ``MIN_WIDTH_FRACTION`` of it.

    Returns:
      A distribution of the same type over the narrowed range.
    """
    cur_lo, cur_hi = self.to_scale(np.array([self.low, self.high]))
    kept_scaled = self.to_scale(kept)
    pad = margin * (cur_hi - cur_lo)
    lo_b, hi_b = bounds.to_scale(np.array([bounds.low, bounds.high]))
    new_lo = max(float(kept_scaled.min()) - pad, lo_b)
    new_hi = min(float(kept_scaled.max()) + pad, hi_b)
    min_width = MIN_WIDTH_FRACTION * (hi_b - lo_b)
    if new_hi - new_lo < min_width:  # Centre a minimal range on the kept span, inside bounds.
      centre = min(max((new_lo + new_hi) / 2, lo_b + min_width / 2), hi_b - min_width / 2)
      new_lo, new_hi = centre - min_width / 2, centre + min_width / 2
    low, high = self.from_scale(np.array([new_lo, new_hi]))
    # from_scale(to_scale(x)) can drift by an ulp past the original bounds.
    low = max(float(low), bounds.low)
    high = min(float(high), bounds.high)
    return dataclasses.replace(self, low=low, high=high)

  def perturbed(self, value: float, rng: np.random.Generator, factor: float) -> float:
    """``value`` moved one step up or down (at random) in this distribution's
    scale, clipped to the range: a step is ``log(factor)`` on a log scale
    (i.e. multiply or divide by ``factor``) and ``(factor - 1)`` times the
    width on a linear one. Population-based training's explore move."""
    lo, hi, x = self.to_scale(np.array([self.low, self.high, value]))
    step = math.log(factor) if self.scale_name == "log" else (factor - 1) * (hi - lo)
    moved = float(self.from_scale(np.array([x + step * rng.choice((-1.0, 1.0))]))[0])
    return min(max(moved, self.low), self.high)

  def to_unit(self, values: np.ndarray) -> np.ndarray:
    lo, hi = self.to_scale(np.array([self.low, self.high]))
    return np.clip((self.to_scale(values) - lo) / (hi - lo), 0.0, 1.0)

  def from_unit(self, unit: np.ndarray) -> np.ndarray:
    lo, hi = self.to_scale(np.array([self.low, self.high]))
    values = self.from_scale(lo + np.clip(unit, 0.0, 1.0) * (hi - lo))
    return np.clip(values, self.low, self.high).astype(np.float32)

  def width(self) -> float:
    """Width of the range in this distribution's own scale."""
    lo, hi = self.to_scale(np.array([self.low, self.high]))
    return float(hi - lo)

  def describe(self) -> str:
    return f"[{self.low:.3g}, {self.high:.3g}] {self.scale_name}"

  def to_dict(self) -> dict[str, Any]:
    return {"type": type(self).__name__, "low": self.low, "high": self.high}


@dataclasses.dataclass(frozen=True)
class Uniform(Continuous):
  """Uniform over ``[low, high]``.

  >>> Uniform(0.0, 0.5).describe()
  '[0, 0.5] linear'
  """


@dataclasses.dataclass(frozen=True)
class LogUniform(Continuous):
  """Uniform in ``log(value)`` over ``[low, high]``; needs ``low > 0``.

  The right prior for learning rates and weight decays, whose effect depends
  on their order of magnitude.

  >>> LogUniform(1e-4, 1e-1).describe()
  '[0.0001, 0.1] log'
  """

  scale_name = "log"

  def to_scale(self, values: np.ndarray) -> np.ndarray:
    return np.log(np.asarray(values, dtype=np.float64))

  def from_scale(self, values: np.ndarray) -> np.ndarray:
    return np.exp(np.asarray(values, dtype=np.float64))

  def check(self, name: str) -> None:
    super().check(name)
    if self.low <= 0:
      raise SpaceError(
          f"parameter {name!r}: LogUniform low={self.low!r} must be > 0 for a "
          "log scale; use Uniform for ranges that include 0 or negatives")


def freeze(value: Any) -> Any:
  """Lists become tuples (hashable) and NumPy scalars Python ones, recursively."""
  if isinstance(value, (list, tuple)):
    return tuple(freeze(v) for v in value)
  if isinstance(value, np.generic):
    return value.item()
  return value


def describe_values(values: Mapping[str, Any], sep: str = " ") -> str:
  """``{"hidden": 32, "activation": "relu"}`` -> ``"hidden=32 activation='relu'"``;
  floats to four significant digits."""
  return sep.join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}"
                  for k, v in values.items())


def json_value(value: Any) -> Any:
  """A parameter value as JSON holds it: tuples become lists, the rest is kept."""
  return [json_value(v) for v in value] if isinstance(value, tuple) else value
