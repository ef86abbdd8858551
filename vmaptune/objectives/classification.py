"""Classification: features and integer labels; logits; cross-entropy and accuracy."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from vmaptune.errors import SettingsError
from vmaptune.objectives.base import Metric, Objective, pair, targets
from vmaptune.trials.scoring import MAXIMIZE, MINIMIZE

LABEL_SMOOTHING = "label_smoothing"


@dataclasses.dataclass(frozen=True)
class Classification(Objective):
  """Features and integer labels ``(x [N, ...], y [N])``; logits ``[B, C]``.

  Metrics: ``accuracy`` (maximised) and ``loss`` (mean cross-entropy,
  minimised). Training minimises the cross-entropy, smoothed by
  ``label_smoothing`` when the space searches it (validation and test losses
  stay unsmoothed).
  """

  rank_by: str = "accuracy"
  name = "classification"
  hparam_ranges = {LABEL_SMOOTHING: (0.0, 1.0)}

  def metrics(self) -> dict[str, Metric]:
    return {"accuracy": Metric(_correct, MAXIMIZE), "loss": Metric(_cross_entropy, MINIMIZE)}

  def loss(self, outputs, batch, hparams):
    if LABEL_SMOOTHING in hparams:
      return smoothed_cross_entropy(outputs, targets(batch), hparams[LABEL_SMOOTHING])
    return _cross_entropy(outputs, batch)

  def check_data(self, data) -> None:
    for split in data.splits_for_checks().values():
      pair(split, self.name)
    data.check_labels()

  def check_outputs(self, model_name, outputs, batch, data) -> None:
    expected = (targets(batch).shape[0], data.num_classes)
    if getattr(outputs, "shape", None) != expected:
      raise SettingsError(
          f"model {model_name} outputs shape {getattr(outputs, 'shape', type(outputs).__name__)}"
          f" for a batch of {expected[0]}; expected logits of shape {expected} for the "
          f"dataset's {data.num_classes} classes")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example cross-entropy: logits ``[B, C]``, labels ``[B]`` -> ``[B]``."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array,
                           smoothing: jax.Array | float) -> jax.Array:
  """Per-example cross-entropy against smoothed targets ``[B]``.

  The target is ``(1 - smoothing) * one_hot(labels) + smoothing / C``, written
  as ``ce + smoothing * (uniform_ce - ce)`` so that ``smoothing = 0`` (even a
  traced 0) gives exactly :func:`cross_entropy`. Logits ``[B, C]``, labels ``[B]``.
  """
  ce = cross_entropy(logits, labels)
  uniform_ce = jax.nn.logsumexp(logits, axis=-1) - logits.mean(axis=-1)
  return ce + smoothing * (uniform_ce - ce)


def _cross_entropy(logits, batch):
  return cross_entropy(logits, targets(batch))


def _correct(logits, batch):
  return (jnp.argmax(logits, -1) == targets(batch)).astype(jnp.float32)
