"""Search spaces: an ordered mapping from hyperparameter name to distribution.

Sampling a space for a population of ``P`` lanes gives one array of shape
``[P]`` per name; those arrays are traced inputs of the compiled population
program, so drawing new values (or narrowing the ranges) never recompiles it.

Parameters are of two kinds:

* *traced* (:class:`~vmaptune.space.distributions.LogUniform`, ``Uniform``,
  :class:`~vmaptune.space.discrete.IntUniform`): a number per lane;
* *structural* (:class:`~vmaptune.space.discrete.Choice`, ``IntUniform(...,
  structural=True)``): a static value that changes the program itself (a
  layer width, a depth, an activation name, the batch size). Each
  combination of structural values is a *bucket*, trained as its own
  population (see :mod:`vmaptune.space.structural`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from vmaptune.errors import SpaceError
from vmaptune.space.discrete import Choice, IntUniform
from vmaptune.space.distributions import Distribution, LogUniform, Uniform


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
      kept: ``{name: array [K]}`` values of the kept configurations, for every name.
      margin: fraction of each current range added to each side.
      bounds: the original space, which the result never leaves.
    """
    return Space({name: dist.narrowed(kept[name], margin, bounds[name])
                  for name, dist in self._params.items()})

  def to_unit(self, hparams: Mapping[str, np.ndarray]) -> np.ndarray:
    """The traced parameters' values as points of the unit cube, each axis a
    parameter's range in its own scale (see ``Distribution.to_unit``).

    Args:
      hparams: ``{name: [N]}`` for (at least) every traced parameter.

    Returns:
      float64 ``[N, D]``, D the traced parameters in the space's order.
    """
    traced = self.traced()
    return np.stack([dist.to_unit(np.asarray(hparams[name], np.float64))
                     for name, dist in traced.items()], axis=-1)

  def from_unit(self, unit: np.ndarray) -> dict[str, np.ndarray]:
    """Points ``[N, D]`` of the unit cube (clipped) as ``{name: float32 [N]}``
    of the traced parameters: the inverse of :meth:`to_unit`.

    >>> space = Space(lr=LogUniform(1e-4, 1.0), layers=IntUniform(1, 4))
    >>> {k: v.tolist() for k, v in space.from_unit(np.array([[0.5, 0.0]])).items()}
    {'lr': [0.009999999776482582], 'layers': [1.0]}
    """
    unit = np.asarray(unit, np.float64)
    return {name: dist.from_unit(unit[:, d])
            for d, (name, dist) in enumerate(self.traced().items())}

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

