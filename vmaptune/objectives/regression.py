"""Regression: features and real targets; outputs shaped like one target; squared error."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vmaptune.errors import SettingsError
from vmaptune.objectives.base import Metric, Objective, pair, targets


def _per_example_mean(values: jax.Array) -> jax.Array:
  """``[B, ...] -> [B]``: the mean over every axis but the first."""
  return values.reshape(values.shape[0], -1).mean(axis=1)


def _regression_error(outputs, batch):
  target = targets(batch)
  return outputs.reshape(target.shape) - target


@dataclasses.dataclass(frozen=True)
class Regression(Objective):
  """Features and real targets ``(x [N, ...], y [N] or [N, ...])``; outputs
  shaped like one target (``[B, 1]`` or ``[B]`` for ``[B]`` targets).

  Metrics: ``mse`` (mean squared error) and ``mae`` (mean absolute error),
  both minimised; training minimises the squared error.
  """

  rank_by: str = "mse"
  name = "regression"

  def metrics(self) -> dict[str, Metric]:
    return {"mse": Metric(lambda o, b: _per_example_mean(_regression_error(o, b) ** 2)),
            "mae": Metric(lambda o, b: _per_example_mean(jnp.abs(_regression_error(o, b))))}

  def loss(self, outputs, batch, hparams):
    return _per_example_mean(_regression_error(outputs, batch) ** 2)

  def check_data(self, data) -> None:
    for split in data.splits_for_checks().values():
      pair(split, self.name)

  def check_outputs(self, model_name, outputs, batch, data) -> None:
    target = targets(batch).shape
    shape = getattr(outputs, "shape", None)
    accepted = {tuple(target)} | ({(target[0], 1)} if len(target) == 1 else set())
    if shape is None or tuple(shape) not in accepted:
      raise SettingsError(
          f"model {model_name} outputs shape {shape or type(outputs).__name__} for a batch of "
          f"{target[0]}; expected the targets' shape {tuple(target)}"
          + (f" or {(target[0], 1)}" if len(target) == 1 else ""))
