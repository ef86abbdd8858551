"""Optimizer factories: searched hyperparameters in, an optax transformation out.

A factory takes ``hparams``, a dict of scalars for one lane (traced arrays
inside the compiled program), and returns an ``optax.GradientTransformation``.
Built-in factories wrap their optimizer in ``optax.inject_hyperparams`` so the
numeric hyperparameters live as arrays in the optimizer state, one per lane.

Write your own the same way::

    def lamb(hparams):
      return optax.inject_hyperparams(optax.lamb)(
          learning_rate=hparams["learning_rate"])

A few names are not the optimizer's but the trainer's, listed (with their
valid ranges) in :data:`TRAINER_HPARAMS` and nowhere else; they may be searched
with any optimizer, built-in or not, and are passed to factories too:

* ``dropout_rate``: the rate of the model's dropout layers in training (the
  model takes a ``dropout_rate`` call argument; evaluation never drops);
* ``warmup_epochs``: epochs of linear step-size warmup (see :func:`scheduled`).

Other names are the objective's (``label_smoothing`` for classification, a
loss weight of your own; see :mod:`vmaptune.objectives`). A searched name
that nothing reads is refused before compiling (:mod:`vmaptune.search.checks`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

OptimizerFactory = Callable[[Mapping[str, jax.Array]], optax.GradientTransformation]


class Interval(NamedTuple):
  """The values a hyperparameter can take: ``[low, high)``, or ``[low, high]``
  when ``closed``."""
  low: float
  high: float
  closed: bool = False

  def contains(self, low: float, high: float) -> bool:
    return self.low <= low and (high <= self.high if self.closed else high < self.high)

  def describe(self) -> str:
    return f"[{self.low:g}, {self.high:g}{']' if self.closed else ')'}"


DROPOUT_RATE = "dropout_rate"
WARMUP_EPOCHS = "warmup_epochs"

# Per-lane hyperparameters the trainer consumes itself, whatever the optimizer
# and objective (train.py reads the first, `scheduled` the second), and their
# valid ranges. Each is a traced value inside the compiled step: searching it
# never recompiles.
TRAINER_HPARAMS: dict[str, Interval] = {
    DROPOUT_RATE: Interval(0.0, 1.0),
    WARMUP_EPOCHS: Interval(0.0, math.inf),
}


@dataclasses.dataclass(frozen=True)
class BuiltinOptimizer:
  """A named optimizer with searchable hyperparameters and their defaults.

  Attributes:
    name: the name used in configs, e.g. ``"adamw"``.
    required: hyperparameters the space must contain.
    defaults: hyperparameters used when the space does not search them; they
      are injected into the optimizer state too, so searching one at its
      default value is the same computation as not searching it.
    build: ``build(**hparams) -> GradientTransformation``.
    ranges: valid values of some hyperparameters, checked against the space.
  """

  name: str
  required: tuple[str, ...]
  defaults: Mapping[str, float]
  build: Callable[..., optax.GradientTransformation]
  ranges: Mapping[str, Interval] = dataclasses.field(default_factory=dict)

  @property
  def accepted(self) -> tuple[str, ...]:
    return self.required + tuple(self.defaults)

  def __call__(self, hparams: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    values = {**self.defaults, **{k: hparams[k] for k in self.accepted if k in hparams}}
    return optax.inject_hyperparams(self.build)(**values)


def _sgd(learning_rate, momentum, weight_decay):
  # Coupled L2 weight decay, as in classic SGD: added to the gradient.
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(learning_rate, momentum=momentum))


def _adamw(learning_rate, weight_decay, b1, b2, eps):
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


BUILTIN: dict[str, BuiltinOptimizer] = {
    "adamw": BuiltinOptimizer(
        "adamw", required=("learning_rate",),
        defaults={"weight_decay": 1e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8}, build=_adamw,
        ranges={"b1": Interval(0.0, 1.0), "b2": Interval(0.0, 1.0),
                "eps": Interval(0.0, math.inf)}),
    "sgd": BuiltinOptimizer(
        "sgd", required=("learning_rate",),
        defaults={"momentum": 0.9, "weight_decay": 0.0}, build=_sgd,
        ranges={"momentum": Interval(0.0, 1.0, closed=True)}),
}


def resolve(optimizer: str | OptimizerFactory, searched: tuple[str, ...]) -> OptimizerFactory:
  """Checks ``optimizer`` against the searched names and returns a factory.

  Args:
    optimizer: a built-in name (``"adamw"``, ``"sgd"``) or a callable
      ``factory(hparams) -> optax.GradientTransformation``.
    searched: names of the space's parameters.

  Raises:
    ValueError: unknown name, or a required hyperparameter not searched.
  """
  if isinstance(optimizer, str):
    if optimizer not in BUILTIN:
      raise ValueError(f"optimizer={optimizer!r} is unknown; expected one of "
                       f"{sorted(BUILTIN)} or a callable factory(hparams)")
    spec = BUILTIN[optimizer]
    missing = [k for k in spec.required if k not in searched]
    if missing:
      raise ValueError(f"optimizer {optimizer!r} needs {missing} in the search space")
    return spec
  if not callable(optimizer):
    raise ValueError(f"optimizer={optimizer!r}; expected a name in {sorted(BUILTIN)} "
                     "or a callable factory(hparams)")
  try:
    inspect.signature(optimizer).bind({})
  except TypeError:
    raise ValueError(f"optimizer factory {optimizer!r} must take one argument, the dict "
                     "of one lane's hyperparameters") from None
  except ValueError:
    pass  # Builtins without a signature: trust them.
  return optimizer


SCHEDULES = ("auto", "constant", "cosine")


def warmup_multiplier(count: jax.Array, warmup_steps: jax.Array) -> jax.Array:
  """Linear warmup: ``min(1, (count + 1) / warmup_steps)`` for step ``count``.

  The first step is scaled by ``1 / warmup_steps`` (not 0, which would waste
  it) and step ``warmup_steps - 1`` onwards by 1. Under one step of warmup
  (``warmup_steps < 1``, 0 included) every step is scaled by exactly 1.

  Args:
    count: int ``[]``, the 0-based step.
    warmup_steps: float ``[]``, traced (one lane's value).

  Returns:
    float32 ``[]`` in ``(0, 1]``.

  >>> [float(warmup_multiplier(jnp.int32(c), jnp.float32(4.0))) for c in range(5)]
  [0.25, 0.5, 0.75, 1.0, 1.0]
  """
  ramp = (count + 1).astype(jnp.float32) / jnp.maximum(warmup_steps, 1.0)
  return jnp.minimum(ramp, 1.0)


def scheduled(factory: OptimizerFactory, schedule: str, total_steps: int, *,
              steps_per_epoch: int = 1, warmup: bool = False) -> OptimizerFactory:
  """Wraps ``factory`` so its updates are scaled by a step-size schedule.

  Scaling the final update by ``s(step)`` is the same as scheduling the
  learning rate for AdamW and SGD (both apply the learning rate last), and it
  works for any user factory too.

  With ``warmup``, ``s(step)`` is also multiplied by a linear warmup over each
  lane's ``hparams["warmup_epochs"] * steps_per_epoch`` steps (see
  :func:`warmup_multiplier`). The length is read from the traced ``hparams``
  every time the factory is called, so lanes warm up for different lengths
  in one compiled program, and a change of value mid-run (population-based
  training) takes effect at the next step. ``warmup_epochs = 0`` scales by
  exactly 1.

  Args:
    factory: the per-lane optimizer factory.
    schedule: ``"cosine"`` (decay from 1 to 0 over ``total_steps``),
      ``"constant"`` (no change), or ``"auto"``: cosine for the built-in
      optimizers, constant for user factories (which may schedule themselves).
    total_steps: steps in one lane's training run.
    steps_per_epoch: optimizer steps in one epoch (converts warmup epochs).
    warmup: apply the per-lane warmup (the space searches ``warmup_epochs``).
  """
  if schedule not in SCHEDULES:
    raise ValueError(f"schedule={schedule!r}; expected one of {list(SCHEDULES)}")
  if schedule == "auto":
    schedule = "cosine" if isinstance(factory, BuiltinOptimizer) else "constant"
  if schedule == "constant" and not warmup:
    return factory
  decay = (optax.cosine_decay_schedule(1.0, max(total_steps, 1)) if schedule == "cosine"
           else None)

  def with_schedule(hparams: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    def multiplier(count: jax.Array) -> jax.Array:
      value = jnp.ones((), jnp.float32) if decay is None else decay(count)
      if warmup:  # One multiplier, so the update is scaled in one pass.
        value = value * warmup_multiplier(count, hparams[WARMUP_EPOCHS] * steps_per_epoch)
      return value

    return optax.chain(factory(hparams), optax.scale_by_schedule(multiplier))

  return with_schedule


def unread_message(unread: list[str], optimizer: str | OptimizerFactory, objective: str,
                   known: list[str]) -> str:
  """Why searched names nothing reads are refused, with close matches among ``known``."""
  hints = [f"{k!r} -> {close[0]!r}" for k in unread
           if (close := difflib.get_close_matches(k, known, n=1, cutoff=0.6))]
  takes = (f", which takes {list(BUILTIN[optimizer].accepted)}"
           if isinstance(optimizer, str) and optimizer in BUILTIN else "")
  return (f"search space parameters {unread} are read by nothing: not by optimizer "
          f"{describe(optimizer)!r}{takes}, nor by the trainer, which takes "
          f"{list(TRAINER_HPARAMS)}, nor by objective {objective!r}"
          + (f" (did you mean {', '.join(hints)}?)" if hints else "")
          + "; remove them, or read them in a custom optimizer factory or objective")


def check_ranges(space: Mapping[str, Any], factory: OptimizerFactory,
                 objective_ranges: Mapping[str, tuple[float, float]] | None = None) -> None:
  """Checks the space's ranges for the trainer's names, the built-in optimizer's
  and the objective's.

  Args:
    space: ``{name: distribution}``; distributions with ``low`` and ``high``
      are checked, others are left alone.
    factory: the resolved optimizer (a user factory's names are its own).
    objective_ranges: ``{name: (low, high)}`` closed intervals of the
      objective's own hyperparameters (e.g. ``label_smoothing``).

  Raises:
    ValueError: a range leaves its name's valid interval, e.g. a dropout rate
      that can reach 1.
  """
  ranges = {**(factory.ranges if isinstance(factory, BuiltinOptimizer) else {}),
            **{name: Interval(low, high, closed=True)
               for name, (low, high) in (objective_ranges or {}).items()},
            **TRAINER_HPARAMS}
  for name, dist in space.items():
    if name not in ranges or not hasattr(dist, "low") or not hasattr(dist, "high"):
      continue
    if not ranges[name].contains(dist.low, dist.high):
      raise ValueError(f"parameter {name!r}: range [{dist.low:g}, {dist.high:g}] leaves "
                       f"{ranges[name].describe()}, the values {name} can take")


def describe(optimizer: str | OptimizerFactory) -> str:
  """A short name for records: the built-in name or the factory's name."""
  if isinstance(optimizer, str):
    return optimizer
  return getattr(optimizer, "__qualname__", None) or type(optimizer).__name__
