"""A population of lanes: one compiled program trains and one evaluates them all.

The lane axis is the leading axis of every per-lane array: hyperparameters
``[P]``, parameters ``[P, ...]``, losses ``[P, epochs]``. The training data and
the keys are broadcast (``in_axes=None``), so each minibatch is gathered once
and meets every lane's weights.

Across devices the lane axis is sharded over a 1-D mesh of every device
(``shard_map``; data and keys replicated, no communication), in every process
when a run spans several (see :mod:`vmaptune.lanes.distributed`); within a device
lanes run in chunks (see :mod:`vmaptune.lanes.chunks`). The population is padded to
a whole number of chunks on every device with copies of its last lane;
padding lanes are computed and then ignored.
Programs are compiled once per population size and reused by every round:
hyperparameters are traced arguments, never static ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import PartitionSpec

from vmaptune.data import Dataset
from vmaptune.data.dataset import split_length
from vmaptune.lanes.alone import Alone, Schedule
from vmaptune.lanes.chunks import (
  MEMORY_HEADROOM,
  Layout,
  TrainingMemory,
  chunked,
  chunked_in_place,
  cpu_chunk,
  fit_chunk,
  free_device_memory,
  layout,
)
from vmaptune.lanes.compilation import MATMUL_PRECISIONS, compiler_options
from vmaptune.lanes.devices import (
  LANES,
  first_local_device,
  lane_mesh,
  lane_sharding,
  put,
  replicated,
)
from vmaptune.lanes.keys import REPLICA, round_keys, split_replica
from vmaptune.lanes.train import (
  EvalBatches,
  Evaluation,
  LaneState,
  Params,
  TrainOutput,
  batches_of,
  eval_batches,
  first_example,
  make_evaluate,
  make_init,
  make_segment,
)
from vmaptune.models.optimizers import OptimizerFactory
from vmaptune.objectives import Classification, Objective
from vmaptune.validation import one_of, optional_whole_number


class Lanes(NamedTuple):
  """A population between training segments, padded to its layout.

  Attributes:
    state: :class:`LaneState` with a leading ``[L]`` lane axis, on device.
    hparams: ``{name: float32 [L]}`` on the host.
    count: the real lanes, the first ``count`` of ``L``; the rest is padding.
  """
  state: LaneState
  hparams: dict[str, np.ndarray]
  count: int


def _check_not_consumed(tree: Any, what: str) -> None:
  """Raises if ``tree`` holds arrays an earlier :meth:`Population.advance`
  consumed (donated): passing them to XLA again would crash the process."""
  if any(leaf.is_deleted() for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array)):
    raise ValueError(f"{what} were consumed by an earlier Population.advance (its state is "
                     "donated to the program); use the lanes that advance returned")


def _pad(values: np.ndarray, size: int) -> np.ndarray:
  """``values`` with its last entry repeated up to ``size`` entries."""
  return np.concatenate([values, np.repeat(values[-1:], size - len(values))])


class Population:
  """Trains and evaluates ``P`` lanes of one model, each with its own hyperparameters.

  Args:
    model: a Linen module mapping a batch's inputs to the outputs ``objective`` reads.
    optimizer: ``factory(hparams) -> optax.GradientTransformation``.
    data: the dataset; only its train and validation splits are put on device.
    objective: what training minimises and validation scores (default: classification).
    epochs: passes over the training split per round.
    batch_size: training examples per step, shared by all lanes.
    eval_batch_size: validation examples per evaluation batch.
    devices: devices to shard lanes over (default: every device, of every
      process of a multi-process run).
    lanes_per_chunk: at most this many lanes vmapped together on a device
      (default: a cache-sized chunk on CPU; elsewhere as few equal chunks as
      fit ``memory_budget_bytes``; see :mod:`vmaptune.lanes.chunks`).
    memory_budget_bytes: bytes per device a training program may use
      (default: ``MEMORY_HEADROOM`` of the device's free memory; none on CPU),
      checked against each new largest population's compiled memory analysis.
    matmul_precision: one of ``MATMUL_PRECISIONS``; ``"bfloat16"``: bf16
      matmul inputs, fp32 accumulation (XLA:CPU ignores it).
    lane_sizes: sizes a lane count is rounded up to (padding lanes are
      computed and ignored), so populations of many sizes share a few
      compiled programs; ``None``: every size is laid out as it is.

  Outputs of :meth:`train` and :meth:`evaluate` have ``layout(P).padded``
  lanes; lanes from ``P`` on are padding and must be ignored.

  >>> import vmaptune as vt, numpy as np
  >>> data = vt.data.digits()
  >>> pop = Population(vt.models.MLP(hidden=(16,)), vt.models.optimizers.BUILTIN["adamw"],
  ...                  data, epochs=1, batch_size=64, eval_batch_size=256)
  >>> hp = {"learning_rate": np.full(3, 1e-2, np.float32)}
  >>> out = pop.train(hp, *vt.lanes.keys.round_keys(seed=0, round_index=0))
  >>> pop.evaluate(out.params)["accuracy"][:3].shape
  (3,)
  """

  def __init__(self, model: nn.Module, optimizer: OptimizerFactory, data: Dataset, *,
               epochs: int, batch_size: int, eval_batch_size: int,
               objective: Objective | None = None,
               devices: list | None = None, lanes_per_chunk: int | None = None,
               memory_budget_bytes: int | None = None, matmul_precision: str = "default",
               lane_sizes: tuple[int, ...] | None = None):
    self.model = model
    self.objective = objective = objective or Classification()
    self.epochs = epochs
    self.batch_size = batch_size
    self.eval_batch_size = eval_batch_size
    self.mesh = lane_mesh(devices)
    self.num_devices = self.mesh.size
    self.platform = self.mesh.devices.flat[0].platform
    if lanes_per_chunk is None and self.platform == "cpu":
      lanes_per_chunk = cpu_chunk(model, jax.eval_shape(
          lambda t: objective.inputs(jax.tree.map(lambda a: a[:batch_size], t)), data.train))
    optional_whole_number("lanes_per_chunk", lanes_per_chunk, 1, error=ValueError)
    optional_whole_number("memory_budget_bytes", memory_budget_bytes, 1, error=ValueError)
    self.lanes_per_chunk = lanes_per_chunk  # None: every lane of a device at once.
    if memory_budget_bytes is None:
      free = free_device_memory(first_local_device(self.mesh))
      memory_budget_bytes = None if free is None else int(MEMORY_HEADROOM * free)
    self.memory_budget_bytes = memory_budget_bytes
    self._largest = 0  # The largest population initialised so far (fitted to the budget).
    one_of("matmul_precision", matmul_precision, MATMUL_PRECISIONS, error=ValueError)
    self.lane_sizes = tuple(sorted(lane_sizes or ()))
    # Read when the programs are traced, so it is part of their cache key.
    self._precision = MATMUL_PRECISIONS[matmul_precision]
    self.compiler_options = compiler_options(self.platform)

    self.init_one = make_init(model, optimizer)
    self.segment_one = make_segment(model, optimizer, objective, batch_size=batch_size,
                                    num_train=split_length(data.train), max_epochs=epochs)
    self.evaluate_one = make_evaluate(model, objective)
    self._replicated = replicated(self.mesh)
    # Gathers lanes (selection, copying) into a lane-sharded result.
    self._gather = jax.jit(lambda tree, index: jax.tree.map(lambda a: a[index], tree),
                           out_shardings=lane_sharding(self.mesh))
    self._train = put(data.train, self._replicated)
    self._val = self.put_batches(data.val)
    self._programs: dict[Layout, dict[str, Callable]] = {}
    self._alone: Alone | None = None

  def layout(self, lanes: int) -> Layout:
    """Devices, chunks and padding for a population of ``lanes``.

    The count is first rounded up to the smallest of ``lane_sizes`` that holds
    it (when given); each device then gets ``ceil(lanes / devices)`` lanes,
    split into as few chunks of at most ``lanes_per_chunk`` as possible, of
    equal size (see :func:`vmaptune.lanes.chunks.layout`). A population smaller than
    the mesh is padded to one lane per device: the extra lanes run on devices
    that would otherwise idle, at no cost in wall time.
    ``layout(layout(P).padded) == layout(P)``.
    """
    if self.lane_sizes:
      lanes = min((size for size in self.lane_sizes if size >= lanes), default=lanes)
    return layout(lanes, self.num_devices, self.lanes_per_chunk)

  def padded_size(self, lanes: int) -> int:
    """Lanes actually computed for a population of ``lanes``."""
    return self.layout(lanes).padded

  def built_sizes(self) -> list[int]:
    """Padded lane counts this population has built programs for (each trained
    by a round), smallest first: work laid out at one of them compiles nothing."""
    return sorted({layout.padded for layout in self._programs})

  def _compiled(self, layout: Layout) -> dict[str, Callable]:
    """The ``init``, ``advance`` and ``evaluate`` programs for ``layout``, built
    once per layout and reused by every round."""
    if layout not in self._programs:
      lane, whole = PartitionSpec(LANES), PartitionSpec()

      def sharded(fn, shared: int, lanes: int = 1, chunked_fn: Callable = chunked):
        return jax.shard_map(
            chunked_fn(fn, layout.chunk), mesh=self.mesh,
            in_specs=(lane,) * lanes + (whole,) * shared, out_specs=lane, check_vma=False)

      def compiled(fn, **kwargs):
        return jax.jit(fn, compiler_options=self.compiler_options, **kwargs)

      def init(hparams, key, train):
        hparams, key, _ = split_replica(hparams, key, key)
        return self.init_one(hparams, key, first_example(self.objective, train))

      def advance(state, hparams, data_key, *shared):
        hparams, _, data_key = split_replica(hparams, data_key, data_key)
        return self.segment_one(hparams, state, data_key, *shared)

      self._programs[layout] = {
          "init": compiled(sharded(init, 2)),
          # The lanes' state is donated and updated chunk by chunk in place, so
          # training holds one copy of the population's state, not two.
          "advance": compiled(sharded(advance, 4, lanes=2, chunked_fn=chunked_in_place),
                              donate_argnums=0),
          "evaluate": compiled(sharded(self.evaluate_one, 1))}
    return self._programs[layout]

  def training_memory(self, names: list[str], layout: Layout) -> TrainingMemory | None:
    """Per-device bytes the training program of ``layout`` needs, from its
    compiled memory analysis (``None`` where the backend gives none).

    The program is compiled, not run: the executable lands in the jit cache,
    so the first real call of that layout does not compile again.

    Args:
      names: the searched hyperparameters' names.
      layout: the layout to measure.
    """
    programs = self._compiled(layout)
    hparams = {name: np.zeros(layout.padded, np.float32) for name in names}
    key = round_keys(0, 0)[0]
    state = jax.eval_shape(programs["init"], hparams, put(key, self._replicated), self._train)
    sharding = lane_sharding(self.mesh)
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                         state)
    with jax.default_matmul_precision(self._precision):
      compiled = programs["advance"].lower(
          *self._advance_args(state, hparams, key, 0, self.epochs)).compile()
    stats = compiled.memory_analysis()
    if stats is None:
      return None
    resident = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                - stats.alias_size_in_bytes)
    return TrainingMemory(int(resident), int(stats.temp_size_in_bytes))

  def _fit_memory(self, hparams: Mapping[str, np.ndarray]) -> None:
    """Fits ``lanes_per_chunk`` to ``memory_budget_bytes`` for a population of
    ``hparams``' size (once per new largest size: smaller ones then fit too)."""
    count = len(next(iter(hparams.values())))
    if count <= self._largest:
      return
    self._largest = count
    if self.memory_budget_bytes is not None:
      def measure(lanes_per_chunk: int | None) -> tuple[Layout, TrainingMemory | None]:
        self.lanes_per_chunk = lanes_per_chunk
        layout = self.layout(count)
        return layout, self.training_memory(list(hparams), layout)

      fit_chunk(measure, self.lanes_per_chunk, count, self.memory_budget_bytes)

  def shrink_chunks(self) -> bool:
    """Halves the lanes per chunk, after a device ran out of memory.

    Returns:
      ``False`` if chunks already hold one lane (nothing left to shrink).
    """
    chunk = self.layout(max(self._largest, 1)).chunk
    if chunk <= 1:
      return False
    self.lanes_per_chunk = chunk // 2
    return True

  def put_batches(self, split: Any) -> EvalBatches:
    """Pads and batches a split (``[N, ...]`` leaves), a copy on every device."""
    batches = eval_batches(split, self.eval_batch_size)
    return EvalBatches(*put(tuple(batches), self._replicated))

  def put_batches_as_val(self, split: Any) -> EvalBatches:
    """:meth:`put_batches`, laid out as the validation split's batches when
    ``split`` fits in as many (its batch size, whole batches of padding after):
    scored by the program that scores the validation split, compiling nothing."""
    count, size = self._val.mask.shape
    if split_length(split) > count * size:
      return self.put_batches(split)
    return EvalBatches(*put(tuple(batches_of(split, count, size)), self._replicated))

  def init(self, hparams: Mapping[str, np.ndarray], init_key: jax.Array) -> Lanes:
    """Initialises one lane per configuration (all from ``init_key``).

    Args:
      hparams: ``{name: float32 [P]}``, one value per lane; with a ``REPLICA``
        entry (whole numbers), lane ``i`` initialises and later draws its
        minibatches from keys folded with ``hparams[REPLICA][i]`` (see
        :func:`vmaptune.lanes.keys.replica_keys`) instead of sharing the round's.
      init_key: the shared initialisation key (see :func:`vmaptune.lanes.keys.round_keys`).
    """
    self._fit_memory(hparams)
    count = len(next(iter(hparams.values())))
    layout = self.layout(count)
    # Padding lanes repeat the last configuration: valid values, results ignored.
    padded = {k: _pad(np.asarray(v, np.float32), layout.padded) for k, v in hparams.items()}
    key = put(init_key, self._replicated)
    with jax.default_matmul_precision(self._precision):
      state = self._compiled(layout)["init"](padded, key, self._train)
    return Lanes(state, padded, count)

  def advance(self, lanes: Lanes, data_key: jax.Array, first_epoch: int,
              num_epochs: int) -> tuple[Lanes, jax.Array]:
    """Trains every lane for epochs ``[first_epoch, first_epoch + num_epochs)``.

    ``lanes.state`` is donated to the program: its arrays are consumed, and
    only the returned lanes may be used afterwards.

    Returns:
      The lanes after training, and ``epoch_loss [L, epochs]`` (NaN outside
      the epochs trained), on device.
    """
    if not (0 <= first_epoch and 0 < num_epochs and first_epoch + num_epochs <= self.epochs):
      raise ValueError(f"epochs [{first_epoch}, {first_epoch + num_epochs}) are outside the "
                       f"budget of {self.epochs}")
    _check_not_consumed(lanes.state, "these lanes")
    layout = self.layout(lanes.count)
    if len(lanes.state.diverged) != layout.padded:  # Laid out before the chunks shrank.
      lanes = self.select(lanes, np.arange(lanes.count))
    args = self._advance_args(lanes.state, lanes.hparams, data_key, first_epoch, num_epochs)
    with jax.default_matmul_precision(self._precision):
      state, losses = self._compiled(layout)["advance"](*args)
    return lanes._replace(state=state), losses

  def _advance_args(self, state: Any, hparams: Any, data_key: jax.Array, first_epoch: int,
                    num_epochs: int) -> tuple:
    """The training program's arguments, placed as every call places them (the key and the
    epoch counts replicated), so that a call, a lowering or a memory measurement of one
    layout share one executable."""
    shared = put((data_key, np.int32(first_epoch), np.int32(num_epochs)), self._replicated)
    return state, hparams, shared[0], self._train, *shared[1:]

  def advance_program(self, hparams: Mapping[str, np.ndarray]) -> tuple[Callable, tuple]:
    """The training program for ``hparams`` (``{name: [P]}``) and its arguments
    for the whole budget, e.g. to ``.lower(*args)`` it or trace its jaxpr. The
    arguments are placed as :meth:`advance` places them, so lowering them after
    a round reuses that round's executable instead of compiling it again."""
    key = round_keys(0, 0)[0]
    lanes = self.init(hparams, key)
    args = self._advance_args(lanes.state, lanes.hparams, key, 0, self.epochs)
    return self._compiled(self.layout(lanes.count))["advance"], args

  def select(self, lanes: Lanes, index: np.ndarray,
             hparams: Mapping[str, np.ndarray] | None = None) -> Lanes:
    """A new population made of lanes ``index`` of ``lanes`` (copies allowed).

    Parameters and optimizer state are gathered on device; the result is
    padded to its own layout. Used to keep the survivors of a rung (successive
    halving) or to copy good lanes over bad ones (population-based training).

    Args:
      lanes: the current population.
      index: int ``[K]`` lanes to take, in the new order.
      hparams: ``{name: [K]}`` hyperparameters of the new lanes (default: the
        selected lanes' own).
    """
    _check_not_consumed(lanes.state, "these lanes")
    index = np.asarray(index, np.int32)
    if hparams is None:
      hparams = {k: v[index] for k, v in lanes.hparams.items()}
    self._fit_memory(hparams)
    layout = self.layout(len(index))
    padded = {k: _pad(np.asarray(v, np.float32), layout.padded) for k, v in hparams.items()}
    state = self._gather(lanes.state, put(_pad(index, layout.padded), self._replicated))
    return Lanes(state, padded, len(index))

  def train(self, hparams: Mapping[str, np.ndarray], init_key: jax.Array,
            data_key: jax.Array) -> TrainOutput:
    """Trains all lanes of ``hparams`` (``{name: float32 [P]}``) for the full
    budget, :meth:`init` then :meth:`advance`: :class:`TrainOutput` with
    ``params [L, ...]``, ``epoch_loss [L, epochs]``, ``diverged [L]`` for ``L =
    layout(P).padded``, on device, sharded over the lanes."""
    lanes, losses = self.advance(self.init(hparams, init_key), data_key, 0, self.epochs)
    return TrainOutput(lanes.state.params, losses, lanes.state.diverged)

  def train_schedules(self, schedules: list[Schedule], lanes: int, init_key: jax.Array,
                      data_key: jax.Array, replicas: int | None = None) -> Lanes:
    """Trains each hyperparameter schedule (a population-based-training lineage,
    or one ``(0, epochs, hparams)`` entry) once per replica, in a population of
    ``lanes`` lanes that padding fills: lane ``r * len(schedules) + i`` is
    schedule ``i``, replica ``r``.

    Args:
      schedules: ``[(first_epoch, end_epoch, hparams), ...]`` each, covering
        ``[0, epochs)`` without gaps.
      lanes: the population's size (at least ``len(schedules) * replicas``): a
        size a round compiled its programs for trains in them.
      init_key, data_key: the keys every lane shares.
      replicas: ``None``: every lane draws from the shared keys, as a round's
        lanes do; ``R``: lane ``i``'s keys are folded with its replica (see
        :data:`vmaptune.lanes.keys.REPLICA`), as a round with seeds does.

    Returns:
      The trained lanes (``count`` is ``lanes``; the real ones come first).
    """
    cuts = sorted({first for s in schedules for first, _, _ in s} | {self.epochs})
    copies = 1 if replicas is None else replicas
    real = len(schedules) * copies
    if real > lanes:
      raise ValueError(f"{real} lanes of schedules do not fit in a population of {lanes}")
    # Padding lanes repeat the first lane.
    order = np.r_[np.tile(np.arange(len(schedules)), copies), np.zeros(lanes - real, int)]

    def at(epoch: int) -> dict[str, np.ndarray]:
      """Every lane's hyperparameters at ``epoch``."""
      current = [next(h for first, end, h in s if first <= epoch < end) for s in schedules]
      hparams = {name: np.array([h[name] for h in current], np.float32)[order]
                 for name in current[0]}
      if replicas is not None:
        replica = np.r_[np.repeat(np.arange(copies), len(schedules)), np.zeros(lanes - real, int)]
        hparams[REPLICA] = replica.astype(np.float32)
      return hparams

    trained = self.init(at(0), init_key)
    for first, end in zip(cuts, cuts[1:], strict=False):
      if first > 0:  # A lineage changes its hyperparameters here; the weights go on.
        trained = self.select(trained, np.arange(trained.count), at(first))
      trained, _ = self.advance(trained, data_key, first, end - first)
    return trained

  def evaluate(self, params: Params, batches: EvalBatches | None = None) -> Evaluation:
    """Every metric of every lane on the validation split (or ``batches``), in
    one call: ``{metric: [L]}``, for the ``L`` lanes of ``params`` padded as
    :meth:`layout` asks (pass :meth:`train`'s output to get ``[L]`` back as is)."""
    _check_not_consumed(params, "these parameters")
    lanes = jax.tree.leaves(params)[0].shape[0]
    layout = self.layout(lanes)
    if layout.padded > lanes:
      params = jax.tree.map(
          lambda p: jax.numpy.concatenate([p, jax.numpy.repeat(p[-1:], layout.padded - lanes,
                                                               axis=0)]), params)
    evaluate = self._compiled(layout)["evaluate"]
    with jax.default_matmul_precision(self._precision):
      return evaluate(params, self._val if batches is None else batches)

  @property
  def alone(self) -> Alone:
    """This population's configurations trained one at a time, without a lane
    axis, on this process's first device (see :mod:`vmaptune.lanes.alone`)."""
    if self._alone is None:
      self._alone = Alone(self.init_one, self.segment_one, self.evaluate_one,
                          train=self._train,
                          example=lambda train: first_example(self.objective, train),
                          val=self._val,
                          epochs=self.epochs, device=first_local_device(self.mesh),
                          eval_batch_size=self.eval_batch_size,
                          precision=self._precision, compiler_options=self.compiler_options)
    return self._alone
