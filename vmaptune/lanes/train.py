"""Training and evaluation of one lane, as pure functions for jit and vmap.

:func:`make_train` does the static set-up (model, optimizer factory, epochs,
batch size) and returns ``train_one(hparams, init_key, data_key, x, y)``, a pure
function whose whole loop is a nested ``lax.scan`` (epochs, then steps). The
searched hyperparameters are its traced ``hparams`` argument; everything static
is closed over. ``population.py`` vmaps it over the lane axis.

What a step minimises and what a split is scored by is the objective's (see
:mod:`vmaptune.objectives`); the data is any pytree of arrays with a leading
example axis, gathered leaf by leaf. Besides the optimizer's and the
objective's hyperparameters, the step reads ``dropout_rate`` when ``hparams``
has it (passed to the model as a call argument, with a ``"dropout"`` random
stream). All are traced values: which names are present is static, their
values are not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vmaptune.data.dataset import split_length
from vmaptune.models.optimizers import DROPOUT_RATE, OptimizerFactory
from vmaptune.objectives import Objective

Params = Any  # A pytree of arrays.


class LaneState(NamedTuple):
  """What one lane carries from step to step."""
  params: Params
  opt_state: optax.OptState
  diverged: jax.Array  # bool []: the loss has been NaN/inf at some step.


class TrainOutput(NamedTuple):
  """Result of training one lane (every field gains a leading ``[P]`` when vmapped).

  Attributes:
    params: the trained parameters (meaningless for a diverged lane).
    epoch_loss: mean training loss of each epoch, ``[epochs]`` (the loss
      optimized: with label smoothing and dropout when searched).
    diverged: bool ``[]``, whether the training loss ever became NaN/inf.
  """
  params: Params
  epoch_loss: jax.Array
  diverged: jax.Array


Evaluation = dict  # {metric name: float32 [] (or [P] when vmapped)}, in the objective's order.


# The dropout keys' stream under a round's data key. Epoch e's minibatch order
# is drawn from fold_in(data_key, e); no epoch index reaches this value.
_DROPOUT_STREAM = 0xFFFFFFFF


def step_key(data_key: jax.Array, epoch: jax.Array, step: jax.Array) -> jax.Array:
  """The random key of step ``step`` of epoch ``epoch`` (dropout's, or an
  objective's ``train_loss``), derived from the round's data key.

  Like the minibatch order it depends only on the data key and the position
  in the run, so every lane of a round draws the same random numbers (common
  random numbers; each lane's rate decides what is dropped), and a lane
  trained in segments, compacted, copied or replayed alone sees the same masks.
  """
  stream = jax.random.fold_in(data_key, _DROPOUT_STREAM)
  return jax.random.fold_in(jax.random.fold_in(stream, epoch), step)


def init_params(model: nn.Module, key: jax.Array, example: Any) -> Params:
  """The model's ``params`` collection for inputs shaped like ``example`` (one example)."""
  return model.init(key, example)["params"]


def needs_key(objective: Objective, hparams: Mapping[str, Any]) -> bool:
  """Whether a training step draws a random key: for dropout, or for the
  objective's own ``train_loss``. Static: a lane that needs none draws none."""
  return DROPOUT_RATE in hparams or objective.train_loss is not None


def first_example(objective: Objective, batch: Any) -> Any:
  """The model inputs of the first example of ``batch`` (``[1, ...]`` leaves)."""
  return objective.inputs(jax.tree.map(lambda a: a[:1], batch))


_INJECTED = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def sync_hyperparams(opt_state: optax.OptState,
                     built: optax.GradientTransformation,
                     params: Params) -> optax.OptState:
  """``opt_state`` with the hyperparameters ``built`` was made with.

  ``optax.inject_hyperparams`` optimizers read their numeric hyperparameters
  from their state, not from the values they were built with. Copying the
  ``hyperparams`` of a fresh ``built.init(params)`` (whatever the factory
  computed from the lane's values: renamed, scaled, derived) into the carried
  state before every update makes the traced ``hparams`` the single source of
  truth, so a strategy that changes a lane's hyperparameters mid-run
  (population-based training) needs nothing else. The fresh moments are never
  read, and XLA removes them.
  """
  fresh = built.init(params)
  is_injected = lambda node: isinstance(node, _INJECTED)

  def sync(carried, new):
    return carried._replace(hyperparams=new.hyperparams) if is_injected(carried) else carried

  return jax.tree.map(sync, opt_state, fresh, is_leaf=is_injected)


def training_loss(model: nn.Module, objective: Objective, params: Params,
                  hparams: Mapping[str, jax.Array], batch: Any,
                  key: jax.Array | None = None) -> jax.Array:
  """Mean training loss of one lane on one minibatch.

  The objective's ``train_loss`` when it has one; otherwise the mean of its
  per-example ``loss`` on the model's outputs, the model called as
  ``model.apply(..., inputs, dropout_rate=rate, rngs={"dropout": key})`` when
  ``hparams`` has ``dropout_rate``.

  Args:
    model: a Linen module.
    objective: what is minimised.
    params: the lane's parameters.
    hparams: one lane's hyperparameters (scalars).
    batch: a pytree of ``[B, ...]`` arrays.
    key: the step's key (see :func:`step_key`); needed when :func:`needs_key`.

  Returns:
    float32 ``[]``.
  """
  if needs_key(objective, hparams) and key is None:
    raise ValueError("this step needs a random key (dropout_rate or the objective's "
                     "train_loss) but none was given")
  if objective.train_loss is not None:
    return objective.train_loss(model, params, batch, key, hparams)
  inputs = objective.inputs(batch)
  if DROPOUT_RATE in hparams:
    outputs = model.apply({"params": params}, inputs, dropout_rate=hparams[DROPOUT_RATE],
                          rngs={"dropout": key})
  else:
    outputs = model.apply({"params": params}, inputs)
  return objective.loss(outputs, batch, hparams).mean()


def make_step(model: nn.Module, optimizer: OptimizerFactory,
              objective: Objective) -> Callable[..., tuple]:
  """Builds ``step(hparams, state, batch, key=None) -> (state, loss)``: one
  optimizer step of one lane.

  The optimizer is rebuilt from the traced ``hparams`` at every call, which
  costs only tracing: the same compiled step serves any hyperparameter values.
  ``state.diverged`` becomes (and stays) true once the loss is NaN/inf. The
  loss is :func:`training_loss` (``key`` is the step's key).

  Args:
    model: a Linen module.
    optimizer: ``factory(hparams) -> optax.GradientTransformation``.
    objective: what the step minimises.

  Returns:
    ``step(hparams, state: LaneState, batch (pytree of [B, ...]), key=None) ->
    (LaneState, loss [])``.
  """

  def step(hparams: Mapping[str, jax.Array], state: LaneState, batch: Any,
           key: jax.Array | None = None) -> tuple[LaneState, jax.Array]:
    loss, grads = jax.value_and_grad(
        lambda params: training_loss(model, objective, params, hparams, batch, key))(
            state.params)
    built = optimizer(hparams)
    opt_state = sync_hyperparams(state.opt_state, built, state.params)
    updates, opt_state = built.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # A diverged lane is only flagged, not frozen: freezing would select over
    # every parameter at every step (~10% of a digits-MLP step), and its NaNs
    # cannot reach other lanes, which never read its values.
    return LaneState(params, opt_state, state.diverged | ~jnp.isfinite(loss)), loss

  return step


def make_init(model: nn.Module, optimizer: OptimizerFactory) -> Callable[..., LaneState]:
  """Builds ``init(hparams, key, example) -> LaneState`` for one lane
  (``example``: the model inputs of one example, ``[1, ...]`` leaves)."""

  def init(hparams: Mapping[str, jax.Array], key: jax.Array, example: Any) -> LaneState:
    params = init_params(model, key, example)
    return LaneState(params, optimizer(hparams).init(params), jnp.zeros((), bool))

  return init


def make_segment(model: nn.Module, optimizer: OptimizerFactory, objective: Objective, *,
                 batch_size: int, num_train: int, max_epochs: int) -> Callable[..., tuple]:
  """Builds ``segment(hparams, state, data_key, train, first_epoch, num_epochs)
  -> (state, epoch_loss [max_epochs])``: train one lane for ``num_epochs``
  epochs starting at epoch ``first_epoch``.

  Epoch ``e`` walks a permutation of the training split drawn from
  ``fold_in(data_key, e)`` in ``num_train // batch_size`` minibatches (the
  remainder is dropped, so every step has the same shape). So training epochs
  ``[0, a)`` then ``[a, b)`` is the same computation as ``[0, b)`` at once,
  which is what lets strategies stop, compact and copy lanes between segments.
  The epoch range is traced: one compiled program serves every segment length.
  Under ``vmap`` with ``data_key`` and ``train`` unbatched, the permutation
  and the gathered minibatch are computed once and shared by all lanes, and
  so are the step keys (:func:`step_key`) when a step needs one.

  A lane whose loss becomes NaN/inf, or whose parameters are not all finite at
  the end of a segment, is marked ``diverged``; its values are garbage and are
  ignored. Lanes never read each other's values, so a diverged lane cannot
  disturb another.

  Args:
    model: a Linen module.
    optimizer: ``factory(hparams) -> optax.GradientTransformation``.
    objective: what each step minimises.
    batch_size: examples per step.
    num_train: size of the training split.
    max_epochs: length of the returned loss record (the round's epoch budget).

  Returns:
    The segment function (``train``: the training split, a pytree of
    ``[num_train, ...]`` arrays); ``epoch_loss[e]`` is the mean training loss
    of epoch ``e`` for the epochs trained here, NaN elsewhere.
  """
  steps_per_epoch = num_train // batch_size
  step = make_step(model, optimizer, objective)

  def segment(hparams: Mapping[str, jax.Array], state: LaneState, data_key: jax.Array,
              train: Any, first_epoch: jax.Array,
              num_epochs: jax.Array) -> tuple[LaneState, jax.Array]:
    def epoch(index, carry):
      state, losses = carry
      order = jax.random.permutation(jax.random.fold_in(data_key, index), num_train)
      batches = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)

      def body(state, xs):
        number, rows = xs
        # Keys are drawn only when a step needs one.
        key = step_key(data_key, index, number) if needs_key(objective, hparams) else None
        return step(hparams, state, jax.tree.map(lambda a: a[rows], train), key)

      state, step_losses = jax.lax.scan(
          body, state, (jnp.arange(steps_per_epoch, dtype=jnp.int32), batches))
      return state, losses.at[index].set(step_losses.mean())

    losses = jnp.full((max_epochs,), jnp.nan, jnp.float32)
    state, losses = jax.lax.fori_loop(first_epoch, first_epoch + num_epochs, epoch,
                                      (state, losses))
    # Checked once per segment rather than every step: it reads every parameter.
    finite = jnp.all(jnp.array([jnp.isfinite(p).all() for p in jax.tree.leaves(state.params)]))
    return state._replace(diverged=state.diverged | ~finite), losses

  return segment


def make_train(model: nn.Module, optimizer: OptimizerFactory, objective: Objective, *,
               epochs: int, batch_size: int, num_train: int) -> Callable[..., TrainOutput]:
  """Builds ``train_one(hparams, init_key, data_key, train)``: a whole run of
  ``epochs`` epochs from initialisation (see :func:`make_segment`).

  Returns:
    ``train_one(hparams, init_key, data_key, train) -> TrainOutput`` where
    ``hparams`` maps names to scalars and ``train`` is the training split.
  """
  init = make_init(model, optimizer)
  segment = make_segment(model, optimizer, objective, batch_size=batch_size,
                         num_train=num_train, max_epochs=epochs)

  def train_one(hparams: Mapping[str, jax.Array], init_key: jax.Array,
                data_key: jax.Array, train: Any) -> TrainOutput:
    state = init(hparams, init_key, first_example(objective, train))
    state, epoch_loss = segment(hparams, state, data_key, train, 0, epochs)
    return TrainOutput(state.params, epoch_loss, state.diverged)

  return train_one


class EvalBatches(NamedTuple):
  """A split cut into equal batches: ``batch`` (its pytree, leaves ``[nb, B, ...]``)
  and ``mask [nb, B]``, 1.0 on real examples, 0.0 on the last batch's padding."""
  batch: Any
  mask: np.ndarray


def batch_layout(examples: int, batch_size: int) -> tuple[int, int]:
  """``(batches, size)``: how :func:`eval_batches` cuts ``examples`` examples."""
  size = max(1, min(batch_size, examples))
  return -(-examples // size), size


def eval_batches(split: Any, batch_size: int) -> EvalBatches:
  """Pads ``split`` (a pytree of ``[N, ...]`` arrays) to a whole number of
  batches of ``min(batch_size, N)``."""
  count, size = batch_layout(split_length(split), batch_size)
  return batches_of(split, count, size)


def batches_of(split: Any, count: int, size: int) -> EvalBatches:
  """``split`` (``[N, ...]`` leaves, ``N <= count * size``) cut into ``count``
  batches of ``size``: ``[count, size, ...]`` leaves. Padding repeats the first
  example, masked out; whole batches of it add nothing to a metric, so a split
  laid out as another's is scored by the other's program."""
  n = split_length(split)
  pad = count * size - n
  if pad < 0:
    raise ValueError(f"{n} examples do not fit in {count} batches of {size}")

  def cut(a: np.ndarray) -> np.ndarray:
    # Padding repeats the first example: valid inputs for any model, masked out.
    a = np.concatenate([a, np.repeat(a[:1], pad, axis=0)]) if pad else a
    return a.reshape((count, size) + a.shape[1:])

  mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  return EvalBatches(jax.tree.map(cut, split), mask.reshape(count, size))


def make_evaluate(model: nn.Module, objective: Objective) -> Callable[[Params, EvalBatches],
                                                                        Evaluation]:
  """Builds ``evaluate_one(params, batches) -> {metric: []}`` for one lane: each
  of the objective's metrics, the mean over the split's examples (then its
  ``transform``), the model called without dropout.

  The batches are walked with ``lax.scan``, so under ``vmap`` the live
  activations are one batch's per lane, however large the split.
  """
  metrics = objective.metrics()

  def evaluate_one(params: Params, batches: EvalBatches) -> Evaluation:
    def body(totals, xs):
      batch, mask = xs
      outputs = model.apply({"params": params}, objective.inputs(batch))
      return {name: totals[name] + (metric.per_example(outputs, batch) * mask).sum()
              for name, metric in metrics.items()}, None

    zero = {name: jnp.zeros((), jnp.float32) for name in metrics}
    totals, _ = jax.lax.scan(body, zero, (batches.batch, batches.mask))
    count = batches.mask.sum()
    values = {}
    for name, metric in metrics.items():
      mean = totals[name] / count
      values[name] = mean if metric.transform is None else metric.transform(mean)
    return values

  return evaluate_one
