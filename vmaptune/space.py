"""Search spaces: distributions over hyperparameters, sampling, and narrowing.

A :class:`Space` maps hyperparameter names to distributions. Sampling a space
for a population of ``P`` lanes gives one array of shape ``[P]`` per name; those
arrays are traced inputs of the compiled population program, so drawing new
values (or narrowing the ranges) never recompiles it.

Narrowing works in each distribution's own scale: a log-uniform parameter is
narrowed in log space, so a kept span of ``[1e-4, 1e-2]`` is two decades wide
whatever its absolute size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping

import numpy as np


class SpaceError(ValueError):
  """A search space or one of its ranges is invalid."""


# A narrowed range is never narrower than this fraction of the original range
# (in the parameter's scale), so narrowing cannot collapse a range to a point.
MIN_WIDTH_FRACTION = 1e-3


@dataclasses.dataclass(frozen=True)
class Continuous:
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

  def width(self) -> float:
    """Width of the range in this distribution's own scale."""
    lo, hi = self.to_scale(np.array([self.low, self.high]))
    return float(hi - lo)

  def describe(self) -> str:
    return f"[{self.low:.3g}, {self.high:.3g}] {self.scale_name}"


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


class Space(Mapping[str, Continuous]):
  """An ordered mapping from hyperparameter name to distribution.

  Every range is checked on construction; errors name the parameter.

  >>> space = Space(learning_rate=LogUniform(1e-4, 1.0),
  ...               weight_decay=LogUniform(1e-8, 1e-1))
  >>> hparams = space.sample(seed=0, round_index=0, size=4)
  >>> sorted(hparams), hparams["learning_rate"].shape
  (['learning_rate', 'weight_decay'], (4,))
  """

  def __init__(self, params: Mapping[str, Continuous] | None = None,
               **kwargs: Continuous):
    merged = dict(params or {})
    overlap = set(merged) & set(kwargs)
    if overlap:
      raise SpaceError(f"parameters given twice: {sorted(overlap)}")
    merged.update(kwargs)
    if not merged:
      raise SpaceError("a Space needs at least one parameter, e.g. "
                       "Space(learning_rate=LogUniform(1e-4, 1.0))")
    for name, dist in merged.items():
      if not isinstance(name, str) or not name.isidentifier():
        raise SpaceError(f"parameter name {name!r} is not a Python identifier")
      if not isinstance(dist, Continuous):
        raise SpaceError(
            f"parameter {name!r}: {dist!r} is not a distribution; expected "
            "LogUniform(low, high) or Uniform(low, high)")
      dist.check(name)
    self._params = merged

  def __getitem__(self, name: str) -> Continuous:
    return self._params[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._params)

  def __len__(self) -> int:
    return len(self._params)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Space) and self._params == other._params

  def __hash__(self) -> int:
    return hash(tuple(self._params.items()))

  def __repr__(self) -> str:
    inner = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
    return f"Space({inner})"

  def sample(self, seed: int, round_index: int, size: int,
             stream: int = 0) -> dict[str, np.ndarray]:
    """Draws ``size`` configurations, deterministically from the integers.

    Sampling runs on the host with NumPy: it costs microseconds, compiles
    nothing, and gives the same values on every platform. ``stream`` tells
    apart independent draws of one round (e.g. Hyperband's brackets).

    Returns:
      ``{name: float32 array [size]}`` in the space's parameter order.
    """
    rng = np.random.default_rng([seed, round_index] + ([stream] if stream else []))
    return {name: dist.sample(rng, size) for name, dist in self._params.items()}

  def narrow(self, kept: Mapping[str, np.ndarray], margin: float,
             bounds: Space) -> Space:
    """The space spanned by the kept configurations (see Continuous.narrowed).

    Args:
      kept: ``{name: array [K]}`` values of the kept lanes, for every name.
      margin: fraction of each current range added to each side.
      bounds: the original space, which the result never leaves.
    """
    return Space({name: dist.narrowed(np.asarray(kept[name]), margin, bounds[name])
                  for name, dist in self._params.items()})

  def describe(self, indent: str = "    ") -> str:
    """One line per parameter: name, range and scale."""
    width = max(len(name) for name in self._params)
    return "\n".join(f"{indent}{name:<{width}}  {dist.describe()}"
                     for name, dist in self._params.items())

  def to_dict(self) -> dict[str, dict]:
    """A JSON-ready description: ``{name: {"type", "low", "high"}}``."""
    return {name: {"type": type(d).__name__, "low": d.low, "high": d.high}
            for name, d in self._params.items()}
