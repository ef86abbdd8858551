"""Objectives: how a model is trained and how a trial is scored.

An :class:`Objective` says what one training step minimises (a per-example
loss, averaged over the minibatch), which metrics a split is scored by (each
a per-example value averaged over the examples, so validation runs in
batches), which of them ranks trials, and in which direction. Everything
downstream (ranking, samplers, strategies, confirmation, records, reports)
reads its :class:`~vmaptune.trials.scoring.Scoring`.

Built in, by name (``objective="regression"`` in a script, a config or on the
command line, with settings as ``"regression(rank_by='mae')"``):

* ``classification`` (the default): a pair ``(x [N, ...], y [N])`` of
  features and integer labels; logits ``[B, C]``; cross-entropy, optionally
  smoothed by a searched ``label_smoothing``; metrics ``accuracy`` (ranks,
  maximised) and ``loss``.
* ``regression``: a pair ``(x, y [N] or [N, ...])`` of real targets; outputs
  shaped like the targets (``[B, 1]`` for ``[B]`` targets); squared error;
  metrics ``mse`` (ranks) and ``mae``, minimised.
* ``language_model``: token sequences ``[N, T]`` (one int array); the model
  maps ``tokens[:, :-1]`` to logits ``[B, T-1, V]`` predicting
  ``tokens[:, 1:]``; token cross-entropy; metrics ``loss`` (ranks),
  ``perplexity`` and ``token_accuracy``.

Your own, in a few lines, with :func:`custom`::

    objective = vt.objectives.custom(
        loss=lambda out, batch, hp: optax.huber_loss(out[:, 0], batch[1]),
        metrics={"mae": vt.objectives.Metric(
            lambda out, batch: jnp.abs(out[:, 0] - batch[1]), "minimize")},
        rank_by="mae")

A loss may read searched hyperparameters of its own (``hp["huber_delta"]``):
any name in the space that the optimizer and the trainer do not read reaches
the loss as the lane's traced value; a name nothing reads is refused before
compiling. For models that need more than ``loss(outputs, batch, hparams)``
(a VAE's sampling, two calls of the model), ``custom(train_loss=fn)`` takes
the whole training loss ``fn(model, params, batch, key, hparams) -> []``.
"""

from __future__ import annotations

from typing import Any

from vmaptune.errors import SettingsError
from vmaptune.objectives.base import Batch, Custom, Metric, Objective, custom
from vmaptune.objectives.classification import (
  LABEL_SMOOTHING,
  Classification,
  cross_entropy,
  smoothed_cross_entropy,
)
from vmaptune.objectives.language_model import LanguageModel
from vmaptune.objectives.regression import Regression
from vmaptune.validation import from_spec

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (Classification, Regression, LanguageModel)}


def parse(spec: Any) -> Objective:
  """An :class:`Objective` from itself, a name, or ``"name(rank_by=...)"``.

  >>> parse("regression(rank_by='mae')").scoring.rank_by
  'mae'

  Raises:
    SettingsError: an unknown name, a malformed spec, or ``rank_by`` not a metric.
  """
  if isinstance(spec, Objective):
    objective = spec
  else:
    try:
      objective = from_spec(spec, OBJECTIVES, "objective", "regression(rank_by='mae')")
    except ValueError as e:
      raise SettingsError(str(e)) from None
  try:
    objective.scoring  # noqa: B018
  except ValueError as e:
    raise SettingsError(f"objective {objective.describe()}: {e}") from None
  return objective


__all__ = ["LABEL_SMOOTHING", "OBJECTIVES", "Batch", "Classification", "Custom", "LanguageModel",
           "Metric", "Objective", "Regression", "cross_entropy", "custom", "parse",
           "smoothed_cross_entropy"]
