"""Checks of a model and an optimizer factory against the data and the space,
traced (never compiled) before any training.

A model must map features ``[B, ...]`` to logits ``[B, num_classes]``, be
deterministic when called without ``dropout_rate`` (evaluation), take a
``dropout_rate`` call argument when the space searches one, and hold no state
besides ``params``. An optimizer factory must build from the space's names.
"""

from __future__ import annotations

import inspect
from typing import Any

import flax.errors
import flax.linen as nn
import jax
import numpy as np

from vmaptune import optimizers
from vmaptune.data import Dataset
from vmaptune.errors import SettingsError
from vmaptune.space import Space


def _takes_dropout_rate(model: nn.Module) -> bool:
  """Whether the model's ``__call__`` accepts a ``dropout_rate`` keyword."""
  try:
    params = inspect.signature(model.__call__).parameters
  except (TypeError, ValueError):
    return True  # No signature to read: the traced call below decides.
  return optimizers.DROPOUT_RATE in params or any(
      p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_model(model: nn.Module, data: Dataset, batch_size: int, *,
                dropout: bool = False) -> Any:
  """Traces (without compiling) the model as training and evaluation will call it.

  Initialises on one example, then applies the parameters to a batch of
  ``batch_size`` examples without random number streams (evaluation, and
  training unless ``dropout``); with ``dropout``, also as training calls it:
  ``apply(..., dropout_rate=<traced scalar>, rngs={"dropout": key})``.

  Args:
    model: the Linen module.
    data: the dataset (feature shape and number of classes).
    batch_size: training examples per step.
    dropout: whether the space searches ``dropout_rate``.

  Returns:
    The shapes of the model's ``params`` (a pytree of ``ShapeDtypeStruct``).

  Raises:
    SettingsError: the model fails on the features, needs random numbers
      where none are given (dropout without ``dropout_rate`` in the space, or
      in evaluation), does not take ``dropout_rate`` although the space searches
      it, has state besides ``params``, or does not output
      ``[batch_size, num_classes]`` logits.
  """
  name = type(model).__name__
  if not isinstance(model, nn.Module):
    raise SettingsError(f"model={model!r} is not a flax.linen Module")
  one = jax.ShapeDtypeStruct((1,) + data.feature_shape, np.float32)
  batch = jax.ShapeDtypeStruct((batch_size,) + data.feature_shape, np.float32)
  key = jax.eval_shape(lambda: jax.random.key(0))  # A key's shape: nothing runs or compiles.
  try:
    variables = jax.eval_shape(model.init, key, one)
  except Exception as e:  # The user's model code: report what it raised.
    raise SettingsError(f"model {name} failed to initialise on one example of shape "
                        f"{one.shape}: {type(e).__name__}: {e}") from e
  extra = sorted(set(variables) - {"params"})
  if extra:
    raise SettingsError(f"model {name} has variable collections {extra} besides 'params'; "
                        "only stateless models (no BatchNorm) are supported")
  how_to = ("a dropout layer that takes the rate as an array, such as "
            "vmaptune.models.Dropout (flax.linen.Dropout needs a Python float), as "
            "vmaptune.models.MLP and CNN do")
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
    raise SettingsError(f"model {name} failed on a batch of shape {batch.shape}: "
                        f"{type(e).__name__}: {e}") from e
  _check_logits(name, logits, batch_size, data.num_classes)
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
      raise SettingsError(f"model {name} failed on a batch of shape {batch.shape} with a "
                          f"traced dropout_rate ({type(e).__name__}: {first_line}); the rate "
                          f"is one array per lane: pass it to {how_to}") from e
    _check_logits(name, logits, batch_size, data.num_classes)
  return variables["params"]


def _check_logits(name: str, logits: Any, batch_size: int, num_classes: int) -> None:
  if getattr(logits, "shape", None) != (batch_size, num_classes):
    raise SettingsError(f"model {name} outputs shape "
                        f"{getattr(logits, 'shape', type(logits).__name__)} for a batch of "
                        f"{batch_size}; expected logits of shape ({batch_size}, "
                        f"{num_classes}) for the dataset's {num_classes} classes")


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
