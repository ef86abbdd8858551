"""Checks of a model, an objective and an optimizer factory against the data and
the space, traced (never compiled) before any training.

A model must map a batch's inputs to the outputs the objective reads (logits
``[B, num_classes]`` for classification), be deterministic when called
without ``dropout_rate`` (evaluation), take a ``dropout_rate`` call argument
when the space searches one, and hold no state besides ``params``. An
optimizer factory must build from the space's names. Every searched name must
be read by something: the optimizer, the trainer or the objective.
"""

from __future__ import annotations

import inspect
from typing import Any

import flax.errors
import flax.linen as nn
import jax
import numpy as np
from jax.extend.core import Var

from vmaptune.data import Dataset
from vmaptune.errors import SettingsError
from vmaptune.models import optimizers
from vmaptune.objectives import Objective
from vmaptune.space.space import Space


def _takes_dropout_rate(model: nn.Module) -> bool:
  """Whether the model's ``__call__`` accepts a ``dropout_rate`` keyword."""
  try:
    params = inspect.signature(model.__call__).parameters
  except (TypeError, ValueError):
    return True  # No signature to read: the traced call below decides.
  return optimizers.DROPOUT_RATE in params or any(
      p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def batch_shapes(data: Dataset, size: int) -> Any:
  """Shapes of a training batch of ``size`` examples (a pytree of ``ShapeDtypeStruct``)."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct((size,) + a.shape[1:], a.dtype),
                      data.train)


def check_model(model: nn.Module, data: Dataset, batch_size: int, *,
                objective: Objective, dropout: bool = False) -> Any:
  """Traces (without compiling) the model as training and evaluation will call it.

  Initialises on one example, then applies the parameters to a batch of
  ``batch_size`` examples without random number streams (evaluation, and
  training unless ``dropout``); with ``dropout``, also as training calls it:
  ``apply(..., dropout_rate=<traced scalar>, rngs={"dropout": key})``.

  Args:
    model: the Linen module.
    data: the dataset.
    batch_size: training examples per step.
    objective: what the outputs must suit.
    dropout: whether the space searches ``dropout_rate``.

  Returns:
    The shapes of the model's ``params`` (a pytree of ``ShapeDtypeStruct``).

  Raises:
    SettingsError: the model fails on the features, needs random numbers
      where none are given (dropout without ``dropout_rate`` in the space, or
      in evaluation), does not take ``dropout_rate`` although the space searches
      it, has state besides ``params``, or outputs what the objective does
      not read (e.g. not ``[batch_size, num_classes]`` logits).
  """
  name = type(model).__name__
  if not isinstance(model, nn.Module):
    raise SettingsError(f"model={model!r} is not a flax.linen Module")
  whole = batch_shapes(data, batch_size)
  one = jax.eval_shape(objective.inputs, batch_shapes(data, 1))
  batch = jax.eval_shape(objective.inputs, whole)
  key = jax.eval_shape(lambda: jax.random.key(0))  # A key's shape: nothing runs or compiles.
  try:
    variables = jax.eval_shape(model.init, key, one)
  except Exception as e:  # The user's model code: report what it raised.
    raise SettingsError(f"model {name} failed to initialise on one example of shape "
                        f"{_shape(one)}: {type(e).__name__}: {e}") from e
  extra = sorted(set(variables) - {"params"})
  if extra:
    raise SettingsError(f"model {name} has variable collections {extra} besides 'params'; "
                        "only stateless models (no BatchNorm) are supported")
  how_to = ("a dropout layer that takes the rate as an array, such as "
            "vmaptune.models.reference.Dropout (flax.linen.Dropout needs a Python float), as "
            "vmaptune.models.reference.MLP and CNN do")
  if dropout and not _takes_dropout_rate(model):
    raise SettingsError(f"the space searches 'dropout_rate' but model {name} takes no "
                        "dropout_rate call argument; give its __call__ a dropout_rate "
                        f"keyword and pass it to {how_to}, or remove dropout_rate from "
                        "the space")
  try:
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, batch)
  except flax.errors.InvalidRngError as e:
    if dropout:
      raise SettingsError(f"model {name} asks for random numbers when called without "
                          f"dropout_rate ({e}); evaluation calls it so and must be "
                          "deterministic: let dropout_rate=None turn its randomness off, "
                          f"e.g. with {how_to}") from e
    raise SettingsError(f"model {name} asks for random numbers ({e}); to train with dropout, "
                        "add dropout_rate to the search space and give the model a "
                        f"dropout_rate call argument passed to {how_to}; otherwise make the "
                        "model deterministic") from e
  except Exception as e:
    raise SettingsError(f"model {name} failed on a batch of shape {_shape(batch)}: "
                        f"{type(e).__name__}: {e}") from e
  objective.check_outputs(name, logits, whole, data)
  if dropout:
    rate = jax.ShapeDtypeStruct((), np.float32)
    try:
      logits = jax.eval_shape(
          lambda v, x, r, k: model.apply(v, x, dropout_rate=r, rngs={"dropout": k}),
          variables, batch, rate, key)
    except flax.errors.InvalidRngError as e:
      raise SettingsError(f"model {name} asks for random numbers besides the 'dropout' "
                          f"stream in training ({e}); only 'dropout' is provided") from e
    except Exception as e:
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
      raise SettingsError(f"model {name} failed on a batch of shape {_shape(batch)} with a "
                          f"traced dropout_rate ({type(e).__name__}: {first_line}); the rate "
                          f"is one array per lane: pass it to {how_to}") from e
    objective.check_outputs(name, logits, whole, data)
  return variables["params"]


def _shape(tree: Any) -> Any:
  """Shapes for messages: one array's shape, or the tree of its leaves' shapes."""
  return jax.tree.map(lambda a: tuple(a.shape), tree)


def check_optimizer(factory: optimizers.OptimizerFactory, space: Space, params: Any) -> None:
  """Traces ``factory(hparams).init(params)`` (no compilation) with the space's names.

  Raises:
    SettingsError: the factory fails, e.g. it reads a name the space lacks.
  """
  hparams = {name: jax.ShapeDtypeStruct((), np.float32) for name in space}
  try:
    jax.eval_shape(lambda h, p: factory(h).init(p), hparams, params)
  except Exception as e:  # The user's factory: report what it raised.
    raise SettingsError(f"optimizer factory failed with the space's hyperparameters "
                        f"{list(space)}: {type(e).__name__}: {e}") from e


def _live_inputs(jaxpr: Any, live_outputs: list[bool]) -> list[bool]:
  """Which inputs of ``jaxpr`` the live outputs depend on (a backward pass over
  its equations; a nested ``jit`` is followed, any other equation counts every
  input as used)."""
  live = {v for v, used in zip(jaxpr.outvars, live_outputs, strict=True)
          if used and isinstance(v, Var)}
  for eqn in reversed(jaxpr.eqns):
    outputs = [isinstance(v, Var) and v in live for v in eqn.outvars]
    if not (any(outputs) or eqn.effects):
      continue
    inner = eqn.params.get("jaxpr")
    if eqn.primitive.name in ("jit", "pjit") and not eqn.effects and \
        len(getattr(inner, "jaxpr", inner).invars) == len(eqn.invars):
      used = _live_inputs(getattr(inner, "jaxpr", inner), outputs)
    else:
      used = [True] * len(eqn.invars)
    live.update(v for v, u in zip(eqn.invars, used, strict=True) if u and isinstance(v, Var))
  return [v in live for v in jaxpr.invars]


def check_training(model: nn.Module, optimizer: optimizers.OptimizerFactory,
                   objective: Objective, data: Dataset, batch_size: int,
                   names: list[str]) -> set[str]:
  """Traces (without compiling) one lane's initialisation, training step and
  evaluation as the population will run them, and returns the searched names
  something read (the optimizer, the schedule, the trainer or the objective).

  Args:
    model: the Linen module.
    optimizer: the (scheduled) optimizer factory.
    objective: what a step minimises and evaluation scores.
    data: the dataset (shapes only).
    batch_size: training examples per step.
    names: the traced hyperparameters' names.

  Raises:
    SettingsError: the objective's loss or a metric fails on the model's
      outputs, or the training step fails.
  """
  from vmaptune.lanes.train import (
    EvalBatches,
    first_example,
    make_evaluate,
    make_init,
    make_step,
    step_key,
  )

  batch = batch_shapes(data, batch_size)

  def trace(hparams: dict[str, Any], batch: Any) -> Any:
    key = jax.random.key(0)
    state = make_init(model, optimizer)(hparams, key, first_example(objective, batch))
    state, loss = make_step(model, optimizer, objective)(hparams, state, batch,
                                                       step_key(key, 0, 0))
    return state.params, state.opt_state, loss

  hparams = {name: jax.ShapeDtypeStruct((), np.float32) for name in names}
  name = objective.describe()
  try:
    closed, (params, _, loss) = jax.make_jaxpr(trace, return_shape=True)(hparams, batch)
  except SettingsError:
    raise
  except Exception as e:  # The user's loss, metrics or model: report what it raised.
    raise SettingsError(f"a training step with objective {name!r} failed: "
                        f"{type(e).__name__}: {e}") from e
  # A name is read when the step's results depend on its value (copying the
  # dict of hyperparameters reads nothing).
  live = _live_inputs(closed.jaxpr, [True] * len(closed.jaxpr.outvars))
  order = [jax.tree_util.keystr(path)[2:-2]
           for path, _ in jax.tree_util.tree_flatten_with_path(hparams)[0]]
  reads = {n for n, used in zip(order, live[:len(order)], strict=True) if used}
  if getattr(loss, "shape", None) != ():
    raise SettingsError(f"objective {name!r}'s training loss has shape "
                        f"{getattr(loss, 'shape', type(loss).__name__)}; expected a scalar "
                        "(loss returns one value per example [B], train_loss their mean)")
  batches = EvalBatches(jax.tree.map(
      lambda s: jax.ShapeDtypeStruct((1,) + s.shape, s.dtype), batch),
      jax.ShapeDtypeStruct((1, batch_size), np.float32))
  def per_example(params: Any, batch: Any) -> dict[str, Any]:
    outputs = model.apply({"params": params}, objective.inputs(batch))
    return {k: m.per_example(outputs, batch) for k, m in objective.metrics().items()}

  try:
    shapes = jax.eval_shape(per_example, params, batch)
    jax.eval_shape(make_evaluate(model, objective), params, batches)
  except Exception as e:
    raise SettingsError(f"objective {name!r}'s metrics failed on the model's outputs: "
                        f"{type(e).__name__}: {e}") from e
  odd = {k: tuple(v.shape) for k, v in shapes.items() if tuple(v.shape) != (batch_size,)}
  if odd:
    raise SettingsError(f"objective {name!r}: metrics {sorted(odd)} give shapes {odd} for a "
                        f"batch of {batch_size}; expected one value per example, "
                        f"({batch_size},) (the split's mean is taken over the examples)")
  return reads
