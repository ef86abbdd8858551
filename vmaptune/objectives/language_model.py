"""Language modelling: next-token prediction over integer token sequences."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import optax

from vmaptune.errors import DataError, SettingsError
from vmaptune.objectives.base import Metric, Objective
from vmaptune.trials.scoring import MAXIMIZE, MINIMIZE


def _lm_targets(batch):
  return batch[:, 1:]


@dataclasses.dataclass(frozen=True)
class LanguageModel(Objective):
  """Next-token prediction over integer token sequences ``[N, T]``.

  The model maps ``tokens[:, :-1]`` (``[B, T-1]``) to logits ``[B, T-1, V]``
  predicting ``tokens[:, 1:]``. Metrics: ``loss`` (mean token cross-entropy,
  nats), ``perplexity`` (``exp(loss)``), both minimised, and
  ``token_accuracy`` (maximised). Every sequence has the same length, so the
  mean over examples is the mean over tokens.
  """

  rank_by: str = "loss"
  name = "language_model"

  def metrics(self) -> dict[str, Metric]:
    return {"loss": Metric(_token_cross_entropy),
            "perplexity": Metric(_token_cross_entropy, MINIMIZE, jnp.exp),
            "token_accuracy": Metric(_token_accuracy, MAXIMIZE)}

  def inputs(self, batch):
    return batch[:, :-1]

  def loss(self, outputs, batch, hparams):
    return _token_cross_entropy(outputs, batch)

  def check_data(self, data) -> None:
    for name, split in data.splits_for_checks().items():
      shape, dtype = getattr(split, "shape", None), getattr(split, "dtype", None)
      if shape is None or len(shape) != 2 or shape[1] < 2 or dtype.kind not in "iu":
        raise DataError(f"objective 'language_model' takes each split as one integer array "
                        f"of token sequences [N, T] with T >= 2; the {name} split is "
                        + (f"{dtype} of shape {shape}" if shape is not None
                           else type(split).__name__))
      if split.size and split.min() < 0:
        raise DataError(f"{name} tokens must be >= 0, got {int(split.min())}")

  def check_outputs(self, model_name, outputs, batch, data) -> None:
    shape = getattr(outputs, "shape", None)
    inputs = (batch.shape[0], batch.shape[1] - 1)
    if shape is None or len(shape) != 3 or tuple(shape[:2]) != inputs:
      raise SettingsError(f"model {model_name} outputs shape {shape} for inputs of shape "
                          f"{inputs}; expected logits [B, T-1, vocabulary]")
    vocabulary = shape[2]
    for name, split in data.splits_for_checks().items():
      if split.size and split.max() >= vocabulary:
        raise DataError(f"{name} tokens reach {int(split.max())} but the model's logits cover "
                        f"a vocabulary of {vocabulary}; expected tokens in [0, {vocabulary})")


def _token_cross_entropy(logits, batch):
  return optax.softmax_cross_entropy_with_integer_labels(logits, _lm_targets(batch)).mean(-1)


def _token_accuracy(logits, batch):
  return (jnp.argmax(logits, -1) == _lm_targets(batch)).astype(jnp.float32).mean(-1)
