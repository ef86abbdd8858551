"""Structural hyperparameters: one compiled population per combination of static values.

A structural parameter (a :class:`~vmaptune.space.discrete.Choice`, or an
``IntUniform(..., structural=True)``) changes the program itself: a layer
width or depth changes the parameter shapes, an activation name the
operations, the batch size the minibatch shape. Such values cannot be traced
lanes of one program, so each combination of them is a *bucket*: its own
model, batch size and :class:`~vmaptune.lanes.population.Population`, compiled once
and reused by every round in which that combination (and lane count) recurs.

Where a structural value goes:

* ``batch_size``: the bucket's training batch size;
* any other name: a field of the Linen module (``model.clone(name=value)``),
  or, when ``model`` is a function, a keyword argument of
  ``model(**values) -> nn.Module``.

How lanes are split is the sampler's choice (see
:meth:`vmaptune.samplers.Sampler.buckets`). By default every combination
still in the round's space gets the same number of lanes, ``ceil(population
/ combinations)``, so a round has at least ``population`` configurations,
bucket shapes repeat while the number of surviving combinations does not
change, and narrowing that drops a category
hands its lanes to the survivors (a dropped category never comes back).
Equal shares also make the comparison fair: each category is tried with as
many configurations of the traced hyperparameters as any other. The
alternative, a lane count fixed per bucket for the whole run, would never
recompile, but the rounds would shrink as categories drop out, spending less
where the search has narrowed to; here a bucket compiles again only when the
number of surviving combinations changes (a second or two per bucket on a
CPU). More combinations than ``population`` are refused: every one must get a
lane, and each is a compiled program.

Every bucket of a round shares the round's initialisation and data-order keys
(common random numbers, as within a population), and the narrow sampler
draws each bucket's traced values from a stream numbered by its position in
the original space (:attr:`Bucket.index`), so a configuration's result
depends neither on the other buckets nor on which categories have been dropped.

>>> import vmaptune as vt
>>> space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1),
...                  hidden=vt.Choice([16, 32]), batch_size=vt.Choice([32, 64]))
>>> buckets = Buckets(vt.models.MLP(), space, population=8, batch_size=64, num_train=1000)
>>> [(b.values, b.model.hidden, b.batch_size) for b in buckets][:2]
[({'hidden': 16, 'batch_size': 32}, 16, 32), ({'hidden': 16, 'batch_size': 64}, 16, 64)]
>>> len(buckets)
4
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax.linen as nn

from vmaptune.space.distributions import describe_values
from vmaptune.space.space import Space
from vmaptune.validation import is_whole

BATCH_SIZE = "batch_size"  # The one structural name that goes to the population, not the model.

ModelSpec = nn.Module | Callable[..., nn.Module]


@dataclasses.dataclass(frozen=True)
class Bucket:
  """One combination of structural values.

  Attributes:
    index: its position in the original space's :meth:`Space.combinations`,
      which seeds its draws (stable while other categories are dropped);
      ``None`` when the space has no structural parameter.
    values: ``{name: value}``, in the space's order (empty without structure).
    model: the Linen module trained in this bucket.
    batch_size: its training batch size.
  """

  index: int | None
  values: dict[str, Any]
  model: nn.Module
  batch_size: int

  def describe(self) -> str:
    """``"hidden=32 activation='relu'"``, or ``""`` without structure."""
    return describe_values(self.values)


def _model_names(model: ModelSpec) -> tuple[str, set[str] | None]:
  """What ``model`` is called in messages, and the names it accepts (``None``: any)."""
  if isinstance(model, nn.Module):
    fields = {f.name for f in dataclasses.fields(model)} - {"parent", "name"}
    return f"model {type(model).__name__}", fields
  name = f"model function {getattr(model, '__qualname__', repr(model))}"
  try:
    parameters = inspect.signature(model).parameters.values()
  except (TypeError, ValueError):
    return name, None  # No signature to read: let the call decide.
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
    return name, None
  return name, {p.name for p in parameters
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              inspect.Parameter.KEYWORD_ONLY)}


def build_model(model: ModelSpec, values: Mapping[str, Any]) -> nn.Module:
  """The module for one combination: ``model.clone(**values)``, or ``model(**values)``.

  Args:
    model: a Linen module (structural names are its fields) or a function of
      the structural values returning one.
    values: the structural values for the model (``batch_size`` left out).

  Raises:
    ValueError: the function fails or returns something else than a module.
  """
  if isinstance(model, nn.Module):
    return model.clone(**values) if values else model
  what, _ = _model_names(model)
  try:
    built = model(**values)
  except Exception as e:  # The user's function: report what it raised.
    raise ValueError(f"{what} failed for {describe_values(values) or 'no arguments'}: "
                     f"{type(e).__name__}: {e}") from e
  if not isinstance(built, nn.Module):
    raise ValueError(f"{what} returned {type(built).__name__} for "
                     f"{describe_values(values) or 'no arguments'}; expected a flax.linen "
                     "Module (a function building a Flax NNX module takes an rngs argument: "
                     "see vmaptune.models.nnx)")
  return built


def _check_batch_sizes(space: Space, num_train: int) -> None:
  dist = space.get(BATCH_SIZE)
  if dist is None:
    return
  if not dist.structural:
    raise ValueError(f"parameter {BATCH_SIZE!r} changes array shapes, so it must be "
                     "structural: Choice([32, 64]) or IntUniform(low, high, structural=True)")
  for value in dist.options():
    if not is_whole(value) or not 1 <= value <= num_train:
      raise ValueError(f"parameter {BATCH_SIZE!r}: value {value!r} is not a whole number in "
                       f"[1, {num_train}] (the training split has {num_train} examples)")


class Buckets:
  """The buckets of a run: every combination of the original space's
  structural values, each with its model and batch size, checked on
  construction.

  Args:
    model: a Linen module whose fields the structural names set, or a
      function ``model(**values) -> nn.Module`` taking them.
    space: the original search space.
    population: configurations per round, P; the combinations must not outnumber it.
    batch_size: the batch size of buckets that do not search ``batch_size``.
    num_train: examples in the training split (bounds the batch sizes).

  Raises:
    ValueError: a structural name the model does not take, a traced or
      out-of-range ``batch_size``, more combinations than lanes, or a model
      function that fails; before anything is compiled.
  """

  def __init__(self, model: ModelSpec, space: Space, *, population: int, batch_size: int,
               num_train: int):
    if not isinstance(model, nn.Module) and not callable(model):
      raise ValueError(f"model={model!r} is not a flax.linen Module or a function returning "
                       "one")
    self.names = space.structural_names
    _check_batch_sizes(space, num_train)
    what, accepted = _model_names(model)
    unknown = [n for n in self.names if n != BATCH_SIZE and accepted is not None
               and n not in accepted]
    if unknown:
      takes = ", ".join(sorted(accepted)) or "nothing"
      hint = ("pass model=a function of the structural values returning the module"
              if isinstance(model, nn.Module) else "add them to its parameters")
      raise ValueError(f"structural parameters {unknown} are neither {BATCH_SIZE!r} nor "
                       f"taken by {what} (it takes {takes}); {hint}")
    combinations = space.combinations()
    if len(combinations) > population:
      counts = " x ".join(f"{n} {len(space[n].options())}" for n in self.names)
      raise ValueError(f"population={population} cannot give a lane to each of the "
                       f"{len(combinations)} combinations of structural values ({counts}); "
                       "each combination is its own compiled population: raise population "
                       "or offer fewer values")
    self._buckets: dict[tuple, Bucket] = {}
    for index, values in enumerate(combinations):
      for_model = {k: v for k, v in values.items() if k != BATCH_SIZE}
      self._buckets[self._key(values)] = Bucket(
          index=index if self.names else None, values=values,
          model=build_model(model, for_model), batch_size=values.get(BATCH_SIZE, batch_size))
    self.population = population

  def _key(self, values: Mapping[str, Any]) -> tuple:
    return tuple(values[name] for name in self.names)

  def __iter__(self) -> Iterator[Bucket]:
    return iter(self._buckets.values())

  def __len__(self) -> int:
    return len(self._buckets)

  @property
  def searched_batch_size(self) -> bool:
    return BATCH_SIZE in self.names

  def find(self, values: Mapping[str, Any]) -> Bucket:
    """The bucket of a configuration (structural names looked up, others ignored)."""
    return self._buckets[self._key(values)]
