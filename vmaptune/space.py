"""Search spaces: distributions over hyperparameters, sampling, and narrowing.

A :class:`Space` maps hyperparameter names to distributions. Sampling a space
for a population of ``P`` lanes gives one array of shape ``[P]`` per name; those
arrays are traced inputs of the compiled population program, so drawing new
values (or narrowing the ranges) never recompiles it.

Parameters are of two kinds:

* *traced* (:class:`LogUniform`, :class:`Uniform`, :class:`IntUniform`): a
  number per lane, fed to the compiled program as a float32 ``[P]`` array;
* *structural* (:class:`Choice`, ``IntUniform(..., structural=True)``): a
  static value that changes the program itself (a layer width, a depth, an
  activation name, the batch size). The tuner trains one population per
  combination of structural values (see :mod:`vmaptune.structural`).

Narrowing works in each distribution's own scale: a log-uniform parameter is
narrowed in log space, so a kept span of ``[1e-4, 1e-2]`` is two decades wide
whatever its absolute size. A categorical parameter keeps the categories
found among the kept lanes.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np


class SpaceError(ValueError):
  """A search space or one of its ranges is invalid."""


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
    """The distribution the next round samples, given the kept lanes' values ``[K]``."""
    raise NotImplementedError

  def perturbed(self, value: Any, rng: np.random.Generator, factor: float) -> Any:
    """``value`` moved one step (population-based training's explore move)."""
    raise TypeError(f"{type(self).__name__} values cannot be perturbed")

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


def _is_whole(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


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
      if not _is_whole(value):
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
      kept: the kept lanes' values ``[K]``, K >= 1 (whole numbers).
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


def _freeze(value: Any) -> Any:
  """Lists become tuples (hashable) and NumPy scalars Python ones, recursively."""
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
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
  narrows a Choice to the categories found among the kept lanes. Values may
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
      object.__setattr__(self, "values", _freeze(self.values))

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
    return _freeze(raw)

  def describe(self) -> str:
    return "{" + ", ".join(map(repr, self.values)) + "} choice"

  def to_dict(self) -> dict[str, Any]:
    return {"type": "Choice", "values": json_value(self.values)}


class Space(Mapping[str, Distribution]):
  """An ordered mapping from hyperparameter name to distribution.

  Every distribution is checked on construction; errors name the parameter.

  >>> space = Space(learning_rate=LogUniform(1e-4, 1.0),
  ...               weight_decay=LogUniform(1e-8, 1e-1))
  >>> hparams = space.sample(seed=0, round_index=0, size=4)
  >>> sorted(hparams), hparams["learning_rate"].shape
  (['learning_rate', 'weight_decay'], (4,))
  >>> wide = Space(learning_rate=LogUniform(1e-4, 1.0), hidden=Choice([32, 64]),
  ...              depth=IntUniform(1, 2, structural=True))
  >>> wide.structural_names, list(wide.traced())
  (('hidden', 'depth'), ['learning_rate'])
  >>> len(wide.combinations()), wide.combinations()[1]
  (4, {'hidden': 32, 'depth': 2})
  """

  def __init__(self, params: Mapping[str, Distribution] | None = None,
               **kwargs: Distribution):
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
      if not isinstance(dist, Distribution):
        raise SpaceError(
            f"parameter {name!r}: {dist!r} is not a distribution; expected "
            "LogUniform(low, high), Uniform(low, high), IntUniform(low, high) or "
            "Choice(values)")
      dist.check(name)
    self._params = merged

  def __getitem__(self, name: str) -> Distribution:
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

  @property
  def structural_names(self) -> tuple[str, ...]:
    """Names of the structural parameters, in the space's order."""
    return tuple(name for name, dist in self._params.items() if dist.structural)

  def traced(self) -> Space:
    """The space of the traced parameters alone (what one population samples).

    Raises:
      SpaceError: every parameter is structural.
    """
    traced = {name: dist for name, dist in self._params.items() if not dist.structural}
    if not traced:
      raise SpaceError(f"every parameter of the space is structural ({list(self._params)}); "
                       "add at least one traced hyperparameter, e.g. "
                       "learning_rate=LogUniform(1e-4, 1.0)")
    return Space(traced)

  def combinations(self) -> list[dict[str, Any]]:
    """Every combination of structural values, the last name varying fastest;
    ``[{}]`` when there is no structural parameter."""
    names = self.structural_names
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(self._params[n].options() for n in names))]

  def sample(self, seed: int, round_index: int, size: int, stream: int = 0,
             bucket: int | None = None) -> dict[str, np.ndarray]:
    """Draws ``size`` configurations, deterministically from the integers.

    Sampling runs on the host with NumPy: it costs microseconds, compiles
    nothing, and gives the same values on every platform. ``stream`` tells
    apart independent draws of one round (e.g. Hyperband's brackets);
    ``bucket`` (a combination of structural values, numbered in the original
    space) gives each combination its own draws.

    Returns:
      ``{name: array [size]}`` in the space's parameter order: float32 for
      traced parameters, the values themselves for structural ones (see
      :meth:`Distribution.sample`).
    """
    if bucket is None:
      entropy = [seed, round_index] + ([stream] if stream else [])
    else:  # bucket + 1: NumPy pads entropy with zeros, so a final 0 would be no word at all.
      entropy = [seed, round_index, stream, bucket + 1]
    rng = np.random.default_rng(entropy)
    return {name: dist.sample(rng, size) for name, dist in self._params.items()}

  def narrow(self, kept: Mapping[str, np.ndarray], margin: float,
             bounds: Space) -> Space:
    """The space spanned by the kept configurations (see each distribution's
    ``narrowed``: continuous and integer ranges in their own scale, a Choice
    to the categories kept).

    Args:
      kept: ``{name: array [K]}`` values of the kept lanes, for every name.
      margin: fraction of each current range added to each side.
      bounds: the original space, which the result never leaves.
    """
    return Space({name: dist.narrowed(kept[name], margin, bounds[name])
                  for name, dist in self._params.items()})

  def describe(self, indent: str = "    ") -> str:
    """One line per parameter: name, range (or values) and scale."""
    width = max(len(name) for name in self._params)
    return "\n".join(f"{indent}{name:<{width}}  {dist.describe()}"
                     for name, dist in self._params.items())

  def to_dict(self) -> dict[str, dict]:
    """A JSON-ready description: ``{name: {"type", ...}}`` with ``low`` and
    ``high`` for ranges (and ``log``, ``structural`` for integers), ``values``
    for a Choice."""
    return {name: d.to_dict() for name, d in self._params.items()}

  @classmethod
  def from_dict(cls, description: Mapping[str, Mapping[str, Any]]) -> Space:
    """The space :meth:`to_dict` described (JSON lists become tuples again).

    >>> space = Space(lr=LogUniform(1e-4, 1.0), act=Choice(["relu", ("gelu", 2)]))
    >>> Space.from_dict(space.to_dict()) == space
    True

    Raises:
      SpaceError: an unknown distribution type or missing fields.
    """
    kinds = {kind.__name__: kind for kind in (LogUniform, Uniform, IntUniform, Choice)}
    params = {}
    for name, fields in description.items():
      fields = dict(fields)
      kind = kinds.get(fields.pop("type", None))
      if kind is None:
        raise SpaceError(f"parameter {name!r}: {dict(description[name])!r} names no known "
                         f"distribution type; expected one of {sorted(kinds)}")
      try:
        params[name] = kind(**fields)
      except TypeError as e:
        raise SpaceError(f"parameter {name!r}: {dict(description[name])!r}: {e}") from None
    return cls(params)
