"""Optimizer factories: searched hyperparameters in, an optax transformation out.

A factory takes ``hparams``, a dict of scalars for one lane (traced arrays
inside the compiled program), and returns an ``optax.GradientTransformation``.
Built-in factories wrap their optimizer in ``optax.inject_hyperparams`` so the
numeric hyperparameters live as arrays in the optimizer state, one per lane.

Write your own the same way::

    def lamb(hparams):
      return optax.inject_hyperparams(optax.lamb)(
          learning_rate=hparams["learning_rate"])
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping

import jax
import optax

OptimizerFactory = Callable[[Mapping[str, jax.Array]], optax.GradientTransformation]


@dataclasses.dataclass(frozen=True)
class BuiltinOptimizer:
  """A named optimizer with searchable hyperparameters and their defaults.

  Attributes:
    name: the name used in configs, e.g. ``"adamw"``.
    required: hyperparameters the space must contain.
    defaults: hyperparameters used when the space does not search them.
    build: ``build(**hparams) -> GradientTransformation``.
  """

  name: str
  required: tuple[str, ...]
  defaults: Mapping[str, float]
  build: Callable[..., optax.GradientTransformation]

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


BUILTIN: dict[str, BuiltinOptimizer] = {
    "adamw": BuiltinOptimizer(
        "adamw", required=("learning_rate",), defaults={"weight_decay": 1e-4},
        build=lambda learning_rate, weight_decay: optax.adamw(
            learning_rate, weight_decay=weight_decay)),
    "sgd": BuiltinOptimizer(
        "sgd", required=("learning_rate",),
        defaults={"momentum": 0.9, "weight_decay": 0.0}, build=_sgd),
}


def resolve(optimizer: str | OptimizerFactory, searched: tuple[str, ...]) -> OptimizerFactory:
  """Checks ``optimizer`` against the searched names and returns a factory.

  Args:
    optimizer: a built-in name (``"adamw"``, ``"sgd"``) or a callable
      ``factory(hparams) -> optax.GradientTransformation``.
    searched: names of the space's parameters.

  Raises:
    ValueError: unknown name, a required hyperparameter not searched, or a
      searched name the built-in optimizer does not use.
  """
  if isinstance(optimizer, str):
    if optimizer not in BUILTIN:
      raise ValueError(f"optimizer={optimizer!r} is unknown; expected one of "
                       f"{sorted(BUILTIN)} or a callable factory(hparams)")
    spec = BUILTIN[optimizer]
    missing = [k for k in spec.required if k not in searched]
    if missing:
      raise ValueError(f"optimizer {optimizer!r} needs {missing} in the search space")
    unused = [k for k in searched if k not in spec.accepted]
    if unused:
      raise ValueError(f"search space parameters {unused} are not used by optimizer "
                       f"{optimizer!r}, which takes {list(spec.accepted)}; pass a custom "
                       "optimizer factory to search them")
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


def scheduled(factory: OptimizerFactory, schedule: str, total_steps: int) -> OptimizerFactory:
  """Wraps ``factory`` so its updates are scaled by a step-size schedule.

  Scaling the final update by ``s(step)`` is the same as scheduling the
  learning rate for AdamW and SGD (both apply the learning rate last), and it
  works for any user factory too.

  Args:
    factory: the per-lane optimizer factory.
    schedule: ``"cosine"`` (decay from 1 to 0 over ``total_steps``),
      ``"constant"`` (no change), or ``"auto"``: cosine for the built-in
      optimizers, constant for user factories (which may schedule themselves).
    total_steps: steps in one lane's training run.
  """
  if schedule not in SCHEDULES:
    raise ValueError(f"schedule={schedule!r}; expected one of {list(SCHEDULES)}")
  if schedule == "auto":
    schedule = "cosine" if isinstance(factory, BuiltinOptimizer) else "constant"
  if schedule == "constant":
    return factory
  multiplier = optax.cosine_decay_schedule(1.0, max(total_steps, 1))
  return lambda hparams: optax.chain(factory(hparams), optax.scale_by_schedule(multiplier))


def describe(optimizer: str | OptimizerFactory) -> str:
  """A short name for records: the built-in name or the factory's name."""
  if isinstance(optimizer, str):
    return optimizer
  return getattr(optimizer, "__qualname__", None) or type(optimizer).__name__
