"""One configuration trained alone, without a lane axis: the final fit, and
the reference every lane of a population is tested against.

It runs the population's own one-lane functions (``make_init``,
``make_segment``, ``make_evaluate``) under ``jit`` on one device of this
process, so a lane of a population and its configuration trained here differ
only by float rounding (same keys, same data order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from vmaptune.lanes.devices import local
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.train import EvalBatches, Evaluation, Params, TrainOutput, batch_layout

Schedule = list[tuple[int, int, Mapping[str, float]]]


class Alone:
  """Trains and evaluates one configuration on one device.

  Args:
    init_one, segment_one, evaluate_one: a population's one-lane functions.
    train: the training split, a pytree of ``[N, ...]`` arrays (any placement).
    example: ``example(train)``, the model inputs of one example (``[1, ...]``).
    val: the validation batches (any placement).
    epochs: the epoch budget.
    device: the device to run on (this process's).
    precision: a ``jax.default_matmul_precision`` value, or ``None``.
    compiler_options: XLA options for the programs.
  """

  def __init__(self, init_one: Callable, segment_one: Callable, evaluate_one: Callable, *,
               train: Any, example: Callable[[Any], Any], val: EvalBatches, epochs: int,
               device: jax.Device, eval_batch_size: int,
               precision: str | None, compiler_options: dict[str, Any] | None):
    self.epochs, self.eval_batch_size = epochs, eval_batch_size
    self.device = device
    self._train, self._val, self._example = train, val, example
    self._precision = precision
    # Compiled only if used.
    self._init = jax.jit(init_one, compiler_options=compiler_options)
    self._segment = jax.jit(segment_one, compiler_options=compiler_options)
    self._evaluate = jax.jit(evaluate_one, compiler_options=compiler_options)

  def compile(self, hparams: Mapping[str, float], test: Any = None) -> None:
    """Compiles what :meth:`fit` and :meth:`evaluate` will run: training
    ``hparams``' kind of configuration, and scoring on the validation split and
    on a split shaped as ``test`` (a pytree of ``jax.ShapeDtypeStruct``
    ``[N, ...]``, e.g. :meth:`vmaptune.data.Dataset.test_structure`; ``None``:
    none). Later calls with these shapes compile nothing, so a run with a
    wall-time budget measures what a final fit compiles before it plans. Trains
    nothing and reads no data: scoring runs on zeros."""
    here = jax.sharding.SingleDeviceSharding(self.device)
    scalars = {k: np.float32(v) for k, v in hparams.items()}
    init_key, data_key, train = local((*round_keys(0, 0), self._train), self.device)
    with jax.default_matmul_precision(self._precision):
      state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here),
                           self._init.lower(scalars, init_key, self._example(train))
                           .compile().out_info)
      self._segment.lower(scalars, state, data_key, train, np.int32(0),
                          np.int32(self.epochs)).compile()
      # Scoring is run, not compiled ahead: a later call did not reuse an
      # ahead-of-time program of it (JAX 0.10.2), while it did training's.
      for batches in [self._val] + ([] if test is None else [self.batches_shaped(test)]):
        self._evaluate(self._zeros(state.params), self._zeros(batches))

  def _zeros(self, shapes: Any) -> Any:
    """Zeros on this device, shaped as ``shapes`` (any leaves with a shape and dtype)."""
    return jax.tree.map(lambda a: jax.device_put(np.zeros(a.shape, a.dtype), self.device), shapes)

  def batches_shaped(self, split: Any) -> EvalBatches:
    """The shapes of :meth:`evaluate`'s batches of a split shaped as ``split``
    (``jax.ShapeDtypeStruct`` ``[N, ...]`` leaves)."""
    examples = jax.tree.leaves(split)[0].shape[0]
    count, size = batch_layout(examples, self.eval_batch_size)
    return EvalBatches(
        jax.tree.map(lambda a: jax.ShapeDtypeStruct((count, size, *a.shape[1:]), a.dtype), split),
        jax.ShapeDtypeStruct((count, size), np.float32))

  def fit_schedule(self, schedule: Schedule, init_key: jax.Array,
                   data_key: jax.Array) -> TrainOutput:
    """Trains one configuration following a hyperparameter schedule, as the
    final fit does (every process of a multi-process run trains the same copy).

    Args:
      schedule: ``[(first_epoch, end_epoch, hparams), ...]`` covering
        ``[0, end)`` without gaps: the lineage of a population-based-training
        lane, or a single ``(0, epochs, hparams)`` entry.
      init_key, data_key: the round's shared keys.

    Returns:
      :class:`TrainOutput` without a lane axis; ``epoch_loss [epochs]``.
    """
    init_key, data_key, train = local((init_key, data_key, self._train), self.device)
    losses = []
    with jax.default_matmul_precision(self._precision):
      first = {k: np.float32(v) for k, v in schedule[0][2].items()}
      state = self._init(first, init_key, self._example(train))
      for start, end, hparams in schedule:
        scalars = {k: np.float32(v) for k, v in hparams.items()}
        state, loss = self._segment(scalars, state, data_key, train, np.int32(start),
                                    np.int32(end - start))
        losses.append(loss)
    # Each segment reports its own epochs and NaN elsewhere: merge them.
    epoch_loss = np.fmax.reduce(np.stack([np.asarray(loss) for loss in losses]), axis=0)
    return TrainOutput(state.params, epoch_loss, state.diverged)

  def fit(self, hparams: Mapping[str, float], init_key: jax.Array,
          data_key: jax.Array) -> TrainOutput:
    """Trains one configuration for the full budget (see :meth:`fit_schedule`)."""
    return self.fit_schedule([(0, self.epochs, hparams)], init_key, data_key)

  def evaluate(self, params: Params, batches: EvalBatches | None = None) -> Evaluation:
    """Every metric (``{name: []}``) of one parameter set on the validation
    split (or ``batches``)."""
    batches = local(self._val if batches is None else batches, self.device)
    with jax.default_matmul_precision(self._precision):
      return self._evaluate(local(params, self.device), batches)
