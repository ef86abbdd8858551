"""Training and evaluation of one lane, as pure functions for jit and vmap.

:func:`make_train` does the static set-up (model, optimizer factory, epochs,
batch size) and returns ``train_one(hparams, init_key, data_key, x, y)``, a pure
function whose whole loop is a nested ``lax.scan`` (epochs, then steps). The
searched hyperparameters are its traced ``hparams`` argument; everything static
is closed over. ``population.py`` vmaps it over the lane axis.

Besides the optimizer's hyperparameters, the training step reads two of its
own when ``hparams`` has them (the names are in
:data:`vmaptune.optimizers.TRAINER_HPARAMS`): ``label_smoothing`` (the training
loss is the smoothed cross-entropy) and ``dropout_rate`` (passed to the model
as a call argument, with a ``"dropout"`` random stream). Both are traced
values: which names are present is static, their values are not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vmaptune.data import Split
from vmaptune.optimizers import DROPOUT_RATE, LABEL_SMOOTHING, OptimizerFactory

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


class Evaluation(NamedTuple):
  """Accuracy and mean cross-entropy over a split (``[P]`` each when vmapped)."""
  accuracy: jax.Array
  loss: jax.Array


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example cross-entropy: logits ``[B, C]``, labels ``[B]`` -> ``[B]``."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array,
                           smoothing: jax.Array | float) -> jax.Array:
  """Per-example cross-entropy against smoothed targets.

  The target is ``(1 - smoothing) * one_hot(labels) + smoothing / C`` (as
  ``optax.smooth_labels`` makes it), written as
  ``ce + smoothing * (uniform_ce - ce)`` so that ``smoothing = 0`` (even a
  traced 0) gives exactly :func:`cross_entropy`.

  Args:
    logits: ``[B, C]``.
    labels: int ``[B]`` in ``[0, C)``.
    smoothing: scalar in ``[0, 1]``, e.g. one lane's traced value.

  Returns:
    ``[B]``.
  """
  ce = cross_entropy(logits, labels)
  # Cross-entropy against the uniform target: logsumexp - mean of the logits.
  uniform_ce = jax.nn.logsumexp(logits, axis=-1) - logits.mean(axis=-1)
  return ce + smoothing * (uniform_ce - ce)


# The dropout keys' stream under a round's data key. Epoch e's minibatch order
# is drawn from fold_in(data_key, e); no epoch index reaches this value.
_DROPOUT_STREAM = 0xFFFFFFFF


def dropout_key(data_key: jax.Array, epoch: jax.Array, step: jax.Array) -> jax.Array:
  """The dropout key of step ``step`` of epoch ``epoch``, derived from the round's data key.

  Like the minibatch order it depends only on the data key and the position
  in the run, so every lane of a round draws the same random numbers (common
  random numbers; each lane's rate decides what is dropped), and a lane
  trained in segments, compacted, copied or replayed alone sees the same masks.
  """
  stream = jax.random.fold_in(data_key, _DROPOUT_STREAM)
  return jax.random.fold_in(jax.random.fold_in(stream, epoch), step)


def init_params(model: nn.Module, key: jax.Array, example: jax.Array) -> Params:
  """The model's ``params`` collection for inputs shaped like ``example [1, ...]``."""
  return model.init(key, example)["params"]


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


def training_loss(model: nn.Module, params: Params, hparams: Mapping[str, jax.Array],
                  x: jax.Array, y: jax.Array, key: jax.Array | None = None) -> jax.Array:
  """Mean training loss of one lane on one minibatch.

  The cross-entropy, smoothed by ``hparams["label_smoothing"]`` if present;
  with ``hparams["dropout_rate"]`` present the model is called as
  ``model.apply(..., x, dropout_rate=rate, rngs={"dropout": key})``.

  Args:
    model: a Linen module mapping ``[B, ...]`` to logits ``[B, C]``.
    params: the lane's parameters.
    hparams: one lane's hyperparameters (scalars).
    x: ``[B, ...]``; y: int ``[B]``.
    key: the dropout key (see :func:`dropout_key`); needed with ``dropout_rate``.

  Returns:
    float32 ``[]``.
  """
  if DROPOUT_RATE in hparams:
    if key is None:
      raise ValueError("hparams has 'dropout_rate' but no dropout key was given")
    logits = model.apply({"params": params}, x, dropout_rate=hparams[DROPOUT_RATE],
                         rngs={"dropout": key})
  else:
    logits = model.apply({"params": params}, x)
  if LABEL_SMOOTHING in hparams:
    return smoothed_cross_entropy(logits, y, hparams[LABEL_SMOOTHING]).mean()
  return cross_entropy(logits, y).mean()


def make_step(model: nn.Module, optimizer: OptimizerFactory) -> Callable[..., tuple]:
  """Builds ``step(hparams, state, x, y, key=None) -> (state, loss)``: one
  optimizer step of one lane.

  The optimizer is rebuilt from the traced ``hparams`` at every call, which
  costs only tracing: the same compiled step serves any hyperparameter values.
  ``state.diverged`` becomes (and stays) true once the loss is NaN/inf. The
  loss is :func:`training_loss` (label smoothing and dropout when ``hparams``
  has them; ``key`` is the step's dropout key).

  Args:
    model: a Linen module mapping ``[B, ...]`` to logits ``[B, C]``.
    optimizer: ``factory(hparams) -> optax.GradientTransformation``.

  Returns:
    ``step(hparams, state: LaneState, x [B, ...], y [B], key=None) -> (LaneState, loss [])``.
  """

  def step(hparams: Mapping[str, jax.Array], state: LaneState, x: jax.Array,
           y: jax.Array, key: jax.Array | None = None) -> tuple[LaneState, jax.Array]:
    loss, grads = jax.value_and_grad(
        lambda params: training_loss(model, params, hparams, x, y, key))(state.params)
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
  """Builds ``init(hparams, key, example [1, ...]) -> LaneState`` for one lane."""

  def init(hparams: Mapping[str, jax.Array], key: jax.Array, example: jax.Array) -> LaneState:
    params = init_params(model, key, example)
    return LaneState(params, optimizer(hparams).init(params), jnp.zeros((), bool))

  return init


def make_segment(model: nn.Module, optimizer: OptimizerFactory, *, batch_size: int,
                 num_train: int, max_epochs: int) -> Callable[..., tuple]:
  """Builds ``segment(hparams, state, data_key, x_train, y_train, first_epoch,
  num_epochs) -> (state, epoch_loss [max_epochs])``: train one lane for
  ``num_epochs`` epochs starting at epoch ``first_epoch``.

  Epoch ``e`` walks a permutation of the training split drawn from
  ``fold_in(data_key, e)`` in ``num_train // batch_size`` minibatches (the
  remainder is dropped, so every step has the same shape). So training epochs
  ``[0, a)`` then ``[a, b)`` is the same computation as ``[0, b)`` at once,
  which is what lets strategies stop, compact and copy lanes between segments.
  The epoch range is traced: one compiled program serves every segment length.
  Under ``vmap`` with ``data_key``, ``x_train`` and ``y_train`` unbatched, the
  permutation and the gathered minibatch are computed once and shared by all
  lanes, and so are the dropout keys (:func:`dropout_key`) when ``hparams``
  has ``dropout_rate``.

  A lane whose loss becomes NaN/inf, or whose parameters are not all finite at
  the end of a segment, is marked ``diverged``; its values are garbage and are
  ignored. Lanes never read each other's values, so a diverged lane cannot
  disturb another.

  Args:
    model: a Linen module mapping ``[B, ...]`` to logits ``[B, C]``.
    optimizer: ``factory(hparams) -> optax.GradientTransformation``.
    batch_size: examples per step.
    num_train: size of the training split.
    max_epochs: length of the returned loss record (the round's epoch budget).

  Returns:
    The segment function; ``epoch_loss[e]`` is the mean training loss of epoch
    ``e`` for the epochs trained here, NaN elsewhere.
  """
  steps_per_epoch = num_train // batch_size
  step = make_step(model, optimizer)

  def segment(hparams: Mapping[str, jax.Array], state: LaneState, data_key: jax.Array,
              x_train: jax.Array, y_train: jax.Array, first_epoch: jax.Array,
              num_epochs: jax.Array) -> tuple[LaneState, jax.Array]:
    def epoch(index, carry):
      state, losses = carry
      order = jax.random.permutation(jax.random.fold_in(data_key, index), num_train)
      batches = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)

      def body(state, xs):
        number, rows = xs
        # Keys are drawn only when the lane searches a dropout rate.
        key = dropout_key(data_key, index, number) if DROPOUT_RATE in hparams else None
        return step(hparams, state, x_train[rows], y_train[rows], key)

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


def make_train(model: nn.Module, optimizer: OptimizerFactory, *, epochs: int,
               batch_size: int, num_train: int) -> Callable[..., TrainOutput]:
  """Builds ``train_one(hparams, init_key, data_key, x_train, y_train)``: a whole
  run of ``epochs`` epochs from initialisation (see :func:`make_segment`).

  Returns:
    ``train_one(hparams, init_key, data_key, x_train [N, ...], y_train [N]) ->
    TrainOutput`` where ``hparams`` maps names to scalars.
  """
  init = make_init(model, optimizer)
  segment = make_segment(model, optimizer, batch_size=batch_size, num_train=num_train,
                         max_epochs=epochs)

  def train_one(hparams: Mapping[str, jax.Array], init_key: jax.Array,
                data_key: jax.Array, x_train: jax.Array,
                y_train: jax.Array) -> TrainOutput:
    state = init(hparams, init_key, x_train[:1])
    state, epoch_loss = segment(hparams, state, data_key, x_train, y_train, 0, epochs)
    return TrainOutput(state.params, epoch_loss, state.diverged)

  return train_one


class EvalBatches(NamedTuple):
  """A split cut into equal batches: ``x [nb, B, ...]``, ``y [nb, B]``, ``mask [nb, B]``.

  The last batch is padded; ``mask`` is 1.0 on real examples, 0.0 on padding.
  """
  x: np.ndarray
  y: np.ndarray
  mask: np.ndarray


def eval_batches(split: Split, batch_size: int) -> EvalBatches:
  """Pads ``split`` to a whole number of batches of ``min(batch_size, N)``."""
  n = len(split)
  size = max(1, min(batch_size, n))
  num_batches = -(-n // size)
  pad = num_batches * size - n
  x = np.concatenate([split.x, np.zeros((pad,) + split.x.shape[1:], split.x.dtype)])
  y = np.concatenate([split.y, np.zeros(pad, split.y.dtype)])
  mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  return EvalBatches(x.reshape((num_batches, size) + split.x.shape[1:]),
                     y.reshape(num_batches, size), mask.reshape(num_batches, size))


def make_evaluate(model: nn.Module) -> Callable[[Params, EvalBatches], Evaluation]:
  """Builds ``evaluate_one(params, batches) -> Evaluation`` for one lane.

  The batches are walked with ``lax.scan``, so under ``vmap`` the live
  activations are ``[P, B, C]``, however large the split.
  """

  def evaluate_one(params: Params, batches: EvalBatches) -> Evaluation:
    def body(totals, batch):
      x, y, mask = batch
      logits = model.apply({"params": params}, x)
      correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
      loss = cross_entropy(logits, y)
      return (totals[0] + (correct * mask).sum(), totals[1] + (loss * mask).sum()), None

    zero = jnp.zeros((), jnp.float32)
    (correct, loss), _ = jax.lax.scan(body, (zero, zero), tuple(batches))
    count = batches.mask.sum()
    return Evaluation(correct / count, loss / count)

  return evaluate_one
