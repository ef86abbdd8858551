"""A population of lanes: one compiled program trains and one evaluates them all.

The lane axis is the leading axis of every per-lane array: hyperparameters
``[P]``, parameters ``[P, ...]``, losses ``[P, epochs]``. The training data and
the keys are broadcast (``in_axes=None``), so each minibatch is gathered once
and meets every lane's weights; for a Dense first layer that is a single
``[B, D] x [D, P*H]`` matmul after XLA's batching.

Programs are compiled once per population size and reused by every round:
hyperparameters are traced arguments, never static ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import numpy as np

from vmaptune.data import Dataset, Split
from vmaptune.optimizers import OptimizerFactory
from vmaptune.train import (
  EvalBatches,
  Evaluation,
  Params,
  TrainOutput,
  eval_batches,
  make_evaluate,
  make_train,
)


class Population:
  """Trains and evaluates ``P`` lanes of one model, each with its own hyperparameters.

  Args:
    model: a Linen module mapping ``[B, ...]`` to logits ``[B, num_classes]``.
    optimizer: ``factory(hparams) -> optax.GradientTransformation``.
    data: the dataset; only its train and validation splits are put on device.
    epochs: passes over the training split per round.
    batch_size: training examples per step, shared by all lanes.
    eval_batch_size: validation examples per evaluation batch.

  >>> import vmaptune as vt, numpy as np
  >>> data = vt.data.digits()
  >>> pop = Population(vt.models.MLP(hidden=(16,)), vt.optimizers.BUILTIN["adamw"],
  ...                  data, epochs=1, batch_size=64, eval_batch_size=256)
  >>> hp = {"learning_rate": np.full(3, 1e-2, np.float32)}
  >>> out = pop.train(hp, *pop.round_keys(seed=0, round_index=0))
  >>> pop.evaluate(out.params).accuracy.shape
  (3,)
  """

  def __init__(self, model: nn.Module, optimizer: OptimizerFactory, data: Dataset, *,
               epochs: int, batch_size: int, eval_batch_size: int):
    self.model = model
    self.epochs = epochs
    self.batch_size = batch_size
    self.train_one = make_train(model, optimizer, epochs=epochs, batch_size=batch_size,
                                num_train=len(data.train))
    self.evaluate_one = make_evaluate(model)
    self.eval_batch_size = eval_batch_size
    self._x_train = jax.device_put(data.train.x)
    self._y_train = jax.device_put(data.train.y)
    self._val = self.put_batches(data.val.x, data.val.y)
    # Unbatched arguments (keys, data) are broadcast to every lane, not copied.
    self._train = jax.jit(jax.vmap(self.train_one, in_axes=(0, None, None, None, None)))
    self._evaluate = jax.jit(jax.vmap(self.evaluate_one, in_axes=(0, None)))
    # Single-lane programs for the final fit; compiled only if used.
    self._fit_one = jax.jit(self.train_one)
    self._evaluate_one = jax.jit(self.evaluate_one)

  def put_batches(self, x: np.ndarray, y: np.ndarray) -> EvalBatches:
    """Pads and batches a split for evaluation and puts it on device."""
    return EvalBatches(*jax.device_put(tuple(eval_batches(Split(x, y), self.eval_batch_size))))

  @staticmethod
  def round_keys(seed: int, round_index: int) -> tuple[jax.Array, jax.Array]:
    """The ``(init_key, data_key)`` every lane of a round shares.

    Sharing them is deliberate (common random numbers): within a round, lanes
    start from the same weights and see the same minibatches, so they differ
    only by their hyperparameters.
    """
    init_key, data_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), round_index))
    return init_key, data_key

  def train(self, hparams: Mapping[str, np.ndarray], init_key: jax.Array,
            data_key: jax.Array) -> TrainOutput:
    """Trains all lanes in one call.

    Args:
      hparams: ``{name: float32 [P]}``, one value per lane.
      init_key, data_key: shared keys (see :meth:`round_keys`).

    Returns:
      :class:`TrainOutput` with ``params [P, ...]``, ``epoch_loss [P, epochs]``,
      ``diverged [P]``; arrays stay on device.
    """
    return self._train(dict(hparams), init_key, data_key, self._x_train, self._y_train)

  def evaluate(self, params: Params, batches: EvalBatches | None = None) -> Evaluation:
    """Accuracy and loss ``[P]`` of every lane on the validation split (or ``batches``)."""
    return self._evaluate(params, self._val if batches is None else batches)

  def fit_one(self, hparams: Mapping[str, float], init_key: jax.Array,
              data_key: jax.Array) -> TrainOutput:
    """Trains a single configuration alone (no lane axis), as the final fit does."""
    scalars = {k: np.float32(v) for k, v in hparams.items()}
    return self._fit_one(scalars, init_key, data_key, self._x_train, self._y_train)

  def evaluate_one_lane(self, params: Params, batches: EvalBatches | None = None) -> Evaluation:
    """Accuracy and loss (scalars) of one unbatched parameter set."""
    return self._evaluate_one(params, self._val if batches is None else batches)
