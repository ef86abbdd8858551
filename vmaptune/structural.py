"""Structural hyperparameters: one compiled population per combination of static values.

A structural parameter (a :class:`~vmaptune.space.Choice`, or an
``IntUniform(..., structural=True)``) changes the program itself: a layer
width or depth changes the parameter shapes, an activation name the
operations, the batch size the minibatch shape. Such values cannot be traced
lanes of one program, so each combination of them is a *bucket*: its own
model, batch size and :class:`~vmaptune.population.Population`, compiled once
and reused by every round in which that combination (and lane count) recurs.

Where a structural value goes:

* ``batch_size``: the bucket's training batch size;
* any other name: a field of the Linen module (``model.clone(name=value)``),
  or, when ``model`` is a function, a keyword argument of
  ``model(**values) -> nn.Module``.

How lanes are split: every combination still in the round's space gets the
same number of lanes, ``ceil(population / combinations)``, so a round has at
least ``population`` configurations, bucket shapes repeat while the number of
surviving combinations does not change, and narrowing that drops a category
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
(common random numbers, as within a population) and draws its own traced
values from a stream numbered by its position in the original space, so a
configuration's result depends neither on the other buckets nor on which
categories have been dropped.

>>> import vmaptune as vt
>>> space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1),
...                  hidden=vt.Choice([16, 32]), batch_size=vt.Choice([32, 64]))
>>> buckets = Buckets(vt.models.MLP(), space, population=8, batch_size=64, num_train=1000)
>>> [(b.values, b.model.hidden, b.batch_size) for b in buckets][:2]
[({'hidden': 16, 'batch_size': 32}, 16, 32), ({'hidden': 16, 'batch_size': 64}, 16, 64)]
>>> buckets.lanes_each(space)
2
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax.linen as nn
import numpy as np

from vmaptune.space import IntUniform, Space, describe_values

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
                     "see vmaptune.nnx)")
  return built


def _check_batch_sizes(space: Space, num_train: int) -> None:
  dist = space.get(BATCH_SIZE)
  if dist is None:
    return
  if not dist.structural:
    raise ValueError(f"parameter {BATCH_SIZE!r} changes array shapes, so it must be "
                     "structural: Choice([32, 64]) or IntUniform(low, high, structural=True)")
  for value in dist.options():
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= num_train:
      raise ValueError(f"parameter {BATCH_SIZE!r}: value {value!r} is not a whole number in "
                       f"[1, {num_train}] (the training split has {num_train} examples)")


class Buckets:
  """The buckets of a run: every combination of the original space's
  structural values, each with its model and batch size, checked on
  construction; their populations are built on first use and cached.

  Args:
    model: a Linen module whose fields the structural names set, or a
      function ``model(**values) -> nn.Module`` taking them.
    space: the original search space.
    population: lanes per round, P; the combinations must not outnumber it.
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
    self._populations: dict[tuple, Any] = {}

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

  def for_space(self, space: Space) -> list[Bucket]:
    """The buckets a round over ``space`` (the original or a narrowed one) trains."""
    return [self.find(values) for values in space.combinations()]

  def lanes_each(self, space: Space) -> int:
    """Lanes each bucket of a round over ``space`` trains: ``ceil(P / buckets)``."""
    return math.ceil(self.population / len(space.combinations()))

  def min_lanes(self) -> int:
    """The fewest lanes a bucket ever gets (the original space's share)."""
    return math.ceil(self.population / len(self))

  def population_for(self, bucket: Bucket, build: Callable[[Bucket], Any]) -> Any:
    """``build(bucket)`` the first time, the same object after: a bucket's
    compiled programs are reused whenever its shape recurs."""
    key = self._key(bucket.values)
    if key not in self._populations:
      self._populations[key] = build(bucket)
    return self._populations[key]


def _column(dist: Any, value: Any, count: int) -> np.ndarray:
  """``[count]`` copies of one structural value: int64 for integers, else objects."""
  if isinstance(dist, IntUniform):
    return np.full(count, value, np.int64)
  column = np.empty(count, object)
  column.fill(value)
  return column


def merge_trials(parts: list[tuple[Bucket, dict[str, Any]]], space: Space) -> dict[str, Any]:
  """Concatenates the trial columns of a round's buckets into one round's.

  Lanes are renumbered so they stay unique within the round (bucket ``b``'s
  lanes follow bucket ``b - 1``'s), parents are offset to the merged trial
  indices, and each structural value becomes a column of ``hparams``.

  Args:
    parts: ``(bucket, columns)`` in bucket order, each ``columns`` as
      :meth:`vmaptune.strategies.TrialLog.arrays` returns them.
    space: the round's space (its order orders ``hparams``).

  Returns:
    Columns ``[T]`` over every bucket's trials, ``hparams`` holding every
    name of ``space``.
  """
  if len(parts) == 1 and not parts[0][0].values:
    return parts[0][1]
  lane_offset = trial_offset = 0
  shifted = []
  for bucket, columns in parts:
    count = len(columns["lane"])
    hparams = {name: (columns["hparams"][name] if name in columns["hparams"]
                      else _column(space[name], bucket.values[name], count))
               for name in space}
    shifted.append({**columns, "hparams": hparams, "lane": columns["lane"] + lane_offset,
                    "parent": np.where(columns["parent"] >= 0,
                                       columns["parent"] + trial_offset, -1)})
    lane_offset += int(columns["lane"].max()) + 1 if count else 0
    trial_offset += count
  merged = {key: None if shifted[0][key] is None  # seed_accuracy with one seed
            else np.concatenate([part[key] for part in shifted])
            for key in shifted[0] if key != "hparams"}
  merged["hparams"] = {name: np.concatenate([part["hparams"][name] for part in shifted])
                       for name in space}
  return merged
