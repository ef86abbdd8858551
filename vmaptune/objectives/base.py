"""What every objective shares: :class:`Metric`, the :class:`Objective` base
class, and :func:`custom`, an objective made of functions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax

from vmaptune.errors import DataError, SettingsError
from vmaptune.trials.scoring import MINIMIZE, Scoring

Batch = Any  # A pytree of arrays with a leading example axis [B, ...].


@dataclasses.dataclass(frozen=True)
class Metric:
  """One metric: a per-example value, averaged over a split's examples.

  Attributes:
    per_example: ``fn(outputs, batch) -> [B]`` (``outputs`` as the model
      returns them for ``batch``'s inputs, evaluation mode).
    direction: ``"maximize"`` or ``"minimize"``.
    transform: applied to the mean over examples (e.g. ``jnp.exp`` turns a
      mean cross-entropy into a perplexity); ``None`` keeps the mean.
  """

  per_example: Callable[[Any, Batch], jax.Array]
  direction: str = MINIMIZE
  transform: Callable[[jax.Array], jax.Array] | None = None


class Objective:
  """Base class: how a model is trained and scored. Subclasses are frozen
  dataclasses whose fields are their settings (``rank_by`` at least)."""

  name: ClassVar[str] = "objective"
  # Ranges of the searched loss hyperparameters it knows, checked against the space.
  hparam_ranges: ClassVar[Mapping[str, tuple[float, float]]] = {}
  rank_by: str

  def metrics(self) -> dict[str, Metric]:
    """``{name: Metric}`` in the order records list them."""
    raise NotImplementedError

  def inputs(self, batch: Batch) -> Any:
    """What the model is called on: a pair's or tuple's first element, a dict's
    ``"x"``, or the batch itself."""
    if isinstance(batch, tuple):
      return batch[0]
    if isinstance(batch, dict) and "x" in batch:
      return batch["x"]
    return batch

  def loss(self, outputs: Any, batch: Batch, hparams: Mapping[str, jax.Array]) -> jax.Array:
    """The per-example training loss ``[B]``; ``hparams`` holds the lane's values."""
    raise NotImplementedError

  # The escape hatch: when set, ``train_loss(model, params, batch, key, hparams)``
  # is the whole mean training loss ``[]`` and ``loss``/``inputs`` are not used in training.
  train_loss: Callable[..., jax.Array] | None = None

  def check_data(self, data: Any) -> None:
    """Raises :class:`~vmaptune.errors.DataError` if the splits do not suit it."""

  def check_outputs(self, model_name: str, outputs: Any, batch: Batch, data: Any) -> None:
    """Raises :class:`~vmaptune.errors.SettingsError` if the model's outputs
    (shapes) do not suit it; ``batch`` holds shapes too."""

  @property
  def scoring(self) -> Scoring:
    return Scoring(tuple((name, m.direction) for name, m in self.metrics().items()),
                   self.rank_by)

  def describe(self) -> str:
    """``name(key=value, ...)`` with the settings that differ from their
    defaults, as configs write it (``"classification"``, ``"regression(rank_by='mae')"``)."""
    changed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.repr and getattr(self, f.name) != f.default}
    return (f"{self.name}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
            if changed else self.name)


def pair(batch: Batch, objective: str) -> tuple[Any, Any]:
  """``(features, targets)`` of a split: a pair ``(x, y)``, or a dict with
  ``"x"`` and ``"y"`` (whose features keep their dtype, e.g. int tokens).

  Raises:
    DataError: the split is neither.
  """
  if isinstance(batch, dict) and "x" in batch and "y" in batch:
    return batch["x"], batch["y"]
  # A Split's len() counts its examples, not its two fields.
  if isinstance(batch, tuple) and len(getattr(batch, "_fields", batch)) == 2:
    return batch[0], batch[1]
  raise DataError(f"objective {objective!r} takes splits that are pairs (x, y) or dicts with "
                  f"'x' and 'y'; got {type(batch).__name__}")


def targets(batch: Batch) -> Any:
  """The targets of a pair ``(x, y)`` or a dict's ``"y"``."""
  return batch["y"] if isinstance(batch, dict) else batch[1]


@dataclasses.dataclass(frozen=True)
class Custom(Objective):
  """An objective made of functions (see :func:`custom`)."""

  metric_map: Mapping[str, Metric] = dataclasses.field(default_factory=dict, repr=False)
  rank_by: str = ""
  loss_fn: Callable | None = dataclasses.field(default=None, repr=False)
  inputs_fn: Callable | None = dataclasses.field(default=None, repr=False)
  train_loss: Callable | None = dataclasses.field(default=None, repr=False)
  label: str = "custom"

  @property
  def name(self) -> str:  # type: ignore[override]
    return self.label

  def metrics(self) -> dict[str, Metric]:
    return dict(self.metric_map)

  def inputs(self, batch):
    return super().inputs(batch) if self.inputs_fn is None else self.inputs_fn(batch)

  def loss(self, outputs, batch, hparams):
    return self.loss_fn(outputs, batch, hparams)

  def describe(self) -> str:
    return self.label


def custom(*, metrics: Mapping[str, Metric], rank_by: str,
           loss: Callable[[Any, Batch, Mapping[str, jax.Array]], jax.Array] | None = None,
           train_loss: Callable[..., jax.Array] | None = None,
           inputs: Callable[[Batch], Any] | None = None, name: str = "custom") -> Objective:
  """An objective from functions.

  Args:
    metrics: ``{name: Metric}``, scored on every split in this order.
    rank_by: the metric that ranks trials (its direction decides which way).
    loss: ``loss(outputs, batch, hparams) -> [B]``, the per-example training
      loss; ``hparams`` maps the lane's searched names to traced scalars.
    train_loss: the escape hatch instead of ``loss``:
      ``train_loss(model, params, batch, key, hparams) -> []``, the whole mean
      training loss of a minibatch (``key`` is the step's random key, the same
      for every lane, new every step; call ``model.apply({"params": params}, ...)``
      as the model needs).
    inputs: ``inputs(batch)`` -> what evaluation calls the model on (default:
      a pair's first element, a dict's ``"x"``, or the batch itself).
    name: how records name it.

  Raises:
    SettingsError: neither or both of ``loss`` and ``train_loss``, a metric
      that is not a :class:`Metric`, or ``rank_by`` not a metric.
  """
  if (loss is None) == (train_loss is None):
    raise SettingsError("custom objective: give exactly one of loss(outputs, batch, hparams) "
                        "or train_loss(model, params, batch, key, hparams)")
  for key, value in (("loss", loss), ("train_loss", train_loss), ("inputs", inputs)):
    if value is not None and not callable(value):
      raise SettingsError(f"custom objective: {key}={value!r} is not callable")
  if not isinstance(metrics, Mapping) or not metrics:
    raise SettingsError(f"custom objective: metrics={metrics!r}; expected a non-empty dict "
                        "{name: vmaptune.objectives.Metric}")
  for metric_name, metric in metrics.items():
    if not isinstance(metric, Metric):
      raise SettingsError(f"custom objective: metric {metric_name!r} is "
                          f"{type(metric).__name__}; expected a vmaptune.objectives.Metric")
  objective = Custom(metric_map=dict(metrics), rank_by=rank_by, loss_fn=loss, inputs_fn=inputs,
                     train_loss=train_loss, label=name)
  try:
    objective.scoring  # noqa: B018  (checks names, directions and rank_by)
  except ValueError as e:
    raise SettingsError(f"custom objective: {e}") from None
  return objective
