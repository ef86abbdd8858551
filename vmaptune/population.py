"""A population of lanes: one compiled program trains and one evaluates them all.

The lane axis is the leading axis of every per-lane array: hyperparameters
``[P]``, parameters ``[P, ...]``, losses ``[P, epochs]``. The training data and
the keys are broadcast (``in_axes=None``), so each minibatch is gathered once
and meets every lane's weights.

Lanes are laid out in two levels:

* across devices: the lane axis is sharded over a 1-D mesh of every device
  (``shard_map``; data and keys replicated, no communication), in every
  process when a run spans several (each process feeds and computes its own
  devices' shards; see :mod:`vmaptune.distributed`);
* within a device: lanes run in groups (chunks) of ``lanes_per_group``,
  vmapped inside a group and looped over groups in the same program, so a
  device's training working set (activations, gradients, optimizer
  temporaries) is one group's. On a GPU or TPU one group holds every lane (the
  widest matmuls) unless the compiled program's memory analysis says it would
  not fit in the device's free memory, in which case the lanes are split into
  as few equal groups as fit; on a CPU a group is sized to stay in cache,
  which the layout ablation in ``experiments/bench_throughput.py`` measured
  ~1.5x faster than one vmap over all of a device's lanes (digits MLP, P=256).

The population is padded to a whole number of groups on every device with
copies of its last lane; padding lanes are computed and then ignored.
Programs are compiled once per population size and reused by every round:
hyperparameters are traced arguments, never static ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import PartitionSpec

from vmaptune.data import Dataset, Split
from vmaptune.devices import (
  LANES,
  first_local_device,
  lane_mesh,
  lane_sharding,
  local,
  put,
  replicated,
)
from vmaptune.optimizers import OptimizerFactory
from vmaptune.train import (
  EvalBatches,
  Evaluation,
  LaneState,
  Params,
  TrainOutput,
  eval_batches,
  make_evaluate,
  make_init,
  make_segment,
)

# Per-device working set a CPU lane group aims for: with ~1 MiB of L2 per core
# and a shared L3, groups of 4 to 32 digits-MLP lanes (~0.4 MiB each) ran at the
# same speed and 64 ran slower (the layout ablation of bench_throughput.py).
CPU_GROUP_BYTES = 4 << 20

# Settings -> jax.default_matmul_precision values. "bfloat16" names the dot
# algorithm (bf16 inputs, fp32 accumulation), which plain "bfloat16" precision
# does not force on GPUs.
MATMUL_PRECISIONS = {"default": None, "bfloat16": "BF16_BF16_F32", "float32": "float32"}

# Share of a device's free memory a training program may plan to use: the rest
# is headroom for evaluation, gathers and the allocator's fragmentation.
MEMORY_HEADROOM = 0.9


class OutOfMemoryError(RuntimeError):
  """A population does not fit in device memory, even one lane per group.

  :func:`vmaptune.tune` sets ``partial`` to the rounds finished before it.
  """

  partial: Any = None


def free_device_memory(device: jax.Device) -> int | None:
  """Bytes ``device`` can still allocate (its limit minus what is in use), or
  ``None`` where the runtime does not say (XLA:CPU)."""
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if not stats or "bytes_limit" not in stats:
    return None
  return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def is_out_of_memory(error: BaseException) -> bool:
  """Whether ``error`` is XLA failing to allocate device memory."""
  return isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error)


def compiler_options(platform: str) -> dict[str, Any] | None:
  """XLA options for programs on ``platform``.

  On CPU, LLVM's level-1 optimisation compiled the digits MLP and CNN
  population programs ~30% faster than the default with the same run time.
  """
  return {"xla_backend_optimization_level": 1} if platform == "cpu" else None


class TrainingMemory(NamedTuple):
  """Bytes one device needs to train a layout, from the compiled program.

  Attributes:
    resident: the lanes' state and hyperparameters in and out, and the
      replicated training data: independent of the group size.
    working: the program's temporaries (one group's activations, gradients and
      optimizer intermediates): proportional to the group size.
  """
  resident: int
  working: int

  @property
  def total(self) -> int:
    return self.resident + self.working


# A per-lane entry of ``hparams`` (never a search-space name, which must be an
# identifier) that gives each lane its own initialisation and data-order seed:
# lane keys become ``fold_in(round key, replica)``. Without it every lane shares
# the round's keys (and its minibatches).
REPLICA = "#replica"


@jax.jit
def replica_keys(init_key: jax.Array, data_key: jax.Array,
                 replica: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The keys of seed replica ``replica`` of a round (see ``REPLICA``)."""
  replica = jax.numpy.asarray(replica).astype(jax.numpy.uint32)
  return jax.random.fold_in(init_key, replica), jax.random.fold_in(data_key, replica)


def _split_replica(hparams: Mapping[str, jax.Array], init_key: jax.Array,
                   data_key: jax.Array) -> tuple[dict, jax.Array, jax.Array]:
  """``hparams`` without ``REPLICA``, and the lane's keys."""
  if REPLICA not in hparams:
    return dict(hparams), init_key, data_key
  rest = {k: v for k, v in hparams.items() if k != REPLICA}
  return rest, *replica_keys(init_key, data_key, hparams[REPLICA])


class Layout(NamedTuple):
  """How a population of ``lanes`` is laid out: ``devices`` used, ``groups`` of
  ``group`` lanes on each, ``padded`` lanes in all (``>= lanes``)."""
  devices: int
  groups: int
  group: int
  padded: int


def lane_footprint_bytes(model: nn.Module, params: Any, batch: jax.ShapeDtypeStruct) -> int:
  """A rough working set of one training lane, in bytes.

  Six copies of the parameters (parameters, gradients, two optimizer moments,
  updates, the previous step's values) and, twice over for the backward pass,
  every intermediate the forward pass produces on one batch.
  """
  num_params = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
  jaxpr = jax.make_jaxpr(lambda p, x: model.apply({"params": p}, x))(params, batch)
  activations = sum(math.prod(v.aval.shape) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars
                    if hasattr(v.aval, "shape"))
  return 4 * (6 * num_params + 2 * activations)


def _grouped(fn: Callable, group: int) -> Callable:
  """``fn`` over a leading lane axis: vmapped within groups of ``group`` lanes,
  looped over groups. The first argument is per-lane (any pytree); the rest
  are shared."""

  def run(per_lane, *shared):
    lanes = jax.tree.leaves(per_lane)[0].shape[0]
    if group >= lanes:
      return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(per_lane, *shared)
    # batch_size=1 would take lax.map's batched path, whose temporaries held a
    # whole stacked copy of the outputs (digits MLP: 90x the plain loop's).
    return jax.lax.map(lambda lane: fn(lane, *shared), per_lane,
                       batch_size=group if group > 1 else None)

  return run


def _grouped_in_place(fn: Callable, group: int) -> Callable:
  """Like :func:`_grouped` for ``fn(state, per_lane, *shared) -> (state, out)``
  whose first argument is updated: each group's slice of ``state`` is
  overwritten in place by its result (``dynamic_update_slice`` on the loop
  carry), so with ``state`` donated the program holds one copy of the
  population's state plus one group's temporaries."""
  vmapped = lambda state, per_lane, *shared: jax.vmap(
      fn, in_axes=(0, 0) + (None,) * len(shared))(state, per_lane, *shared)

  def run(state, per_lane, *shared):
    lanes = jax.tree.leaves(state)[0].shape[0]
    if group >= lanes:
      return vmapped(state, per_lane, *shared)

    def take(tree, start):
      return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, group), tree)

    def put(tree, part, start):
      return jax.tree.map(lambda a, b: jax.lax.dynamic_update_slice_in_dim(a, b, start, 0),
                          tree, part)

    first = jax.eval_shape(vmapped, take(state, 0), take(per_lane, 0), *shared)[1]
    out = jax.tree.map(lambda s: jax.numpy.zeros((lanes,) + s.shape[1:], s.dtype), first)

    def body(index, carry):
      state, out = carry
      start = index * group
      new_state, new_out = vmapped(take(state, start), take(per_lane, start), *shared)
      return put(state, new_state, start), put(out, new_out, start)

    return jax.lax.fori_loop(0, lanes // group, body, (state, out))

  return run


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


@jax.jit
def _round_keys(seed: jax.Array, round_index: jax.Array) -> tuple[jax.Array, jax.Array]:
  # One small program for all rounds, rather than one per eager random op.
  init_key, data_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), round_index))
  return init_key, data_key


class Population:
  """Trains and evaluates ``P`` lanes of one model, each with its own hyperparameters.

  Args:
    model: a Linen module mapping ``[B, ...]`` to logits ``[B, num_classes]``.
    optimizer: ``factory(hparams) -> optax.GradientTransformation``.
    data: the dataset; only its train and validation splits are put on device.
    epochs: passes over the training split per round.
    batch_size: training examples per step, shared by all lanes.
    eval_batch_size: validation examples per evaluation batch.
    devices: devices to shard lanes over (default: every device, of every
      process of a multi-process run).
    lanes_per_group: at most this many lanes vmapped together on a device,
      the groups (chunks) running one after another in the same program
      (default: a cache-sized group on CPU; elsewhere every lane of a device,
      or as few equal groups as fit ``memory_budget_bytes``).
    memory_budget_bytes: bytes per device a training program may use
      (default: ``MEMORY_HEADROOM`` of the device's free memory where the
      runtime reports it, as GPUs and TPUs do; no limit on CPU). When a new,
      larger population is initialised, its compiled training program's
      memory analysis is read and ``lanes_per_group`` lowered until it fits.
    matmul_precision: one of ``MATMUL_PRECISIONS``; ``"bfloat16"`` runs
      matmuls on bf16 inputs with fp32 accumulation (GPUs with bf16 support,
      TPUs; XLA:CPU ignores it).

  Outputs of :meth:`train` and :meth:`evaluate` have ``layout(P).padded``
  lanes; lanes from ``P`` on are padding and must be ignored.

  >>> import vmaptune as vt, numpy as np
  >>> data = vt.data.digits()
  >>> pop = Population(vt.models.MLP(hidden=(16,)), vt.optimizers.BUILTIN["adamw"],
  ...                  data, epochs=1, batch_size=64, eval_batch_size=256)
  >>> hp = {"learning_rate": np.full(3, 1e-2, np.float32)}
  >>> out = pop.train(hp, *pop.round_keys(seed=0, round_index=0))
  >>> pop.evaluate(out.params).accuracy[:3].shape
  (3,)
  """

  def __init__(self, model: nn.Module, optimizer: OptimizerFactory, data: Dataset, *,
               epochs: int, batch_size: int, eval_batch_size: int,
               devices: list | None = None, lanes_per_group: int | None = None,
               memory_budget_bytes: int | None = None, matmul_precision: str = "default"):
    self.model = model
    self.epochs = epochs
    self.batch_size = batch_size
    self.eval_batch_size = eval_batch_size
    self.mesh = lane_mesh(devices)
    self.num_devices = self.mesh.size
    self.platform = self.mesh.devices.flat[0].platform
    if lanes_per_group is None and self.platform == "cpu":
      batch = jax.ShapeDtypeStruct((batch_size,) + data.feature_shape, np.float32)
      params = jax.eval_shape(model.init, jax.random.key(0), batch)["params"]
      lanes_per_group = max(1, CPU_GROUP_BYTES // lane_footprint_bytes(model, params, batch))
    for name, value in (("lanes_per_group", lanes_per_group),
                        ("memory_budget_bytes", memory_budget_bytes)):
      if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                or value < 1):
        raise ValueError(f"{name}={value!r}; expected a whole number >= 1 or None")
    self.lanes_per_group = lanes_per_group  # None: every lane of a device at once.
    if memory_budget_bytes is None:
      free = free_device_memory(first_local_device(self.mesh))
      memory_budget_bytes = None if free is None else int(MEMORY_HEADROOM * free)
    self.memory_budget_bytes = memory_budget_bytes
    self._largest = 0  # The largest population initialised so far (fitted to the budget).
    if matmul_precision not in MATMUL_PRECISIONS:
      raise ValueError(f"matmul_precision={matmul_precision!r}; expected one of "
                       f"{list(MATMUL_PRECISIONS)}")
    # Read when the programs are traced, so it is part of their cache key.
    self._precision = MATMUL_PRECISIONS[matmul_precision]
    self.compiler_options = compiler_options(self.platform)

    self.init_one = make_init(model, optimizer)
    self.segment_one = make_segment(model, optimizer, batch_size=batch_size,
                                    num_train=len(data.train), max_epochs=epochs)
    self.evaluate_one = make_evaluate(model)
    self._replicated = replicated(self.mesh)
    # Gathers lanes (selection, copying) into a lane-sharded result.
    self._gather = jax.jit(lambda tree, index: jax.tree.map(lambda a: a[index], tree),
                           out_shardings=lane_sharding(self.mesh))
    self._x_train = put(data.train.x, self._replicated)
    self._y_train = put(data.train.y, self._replicated)
    self._val = self.put_batches(data.val.x, data.val.y)
    self._programs: dict[Layout, dict[str, Callable]] = {}
    # Single-lane programs for the final fit, on this process's first device
    # only (its inputs are moved there, or the replicated data would run it on
    # every device); compiled only if used.
    self._first = first_local_device(self.mesh)
    self._init_one = jax.jit(self.init_one, compiler_options=self.compiler_options)
    self._segment_one = jax.jit(self.segment_one, compiler_options=self.compiler_options)
    self._evaluate_one = jax.jit(self.evaluate_one, compiler_options=self.compiler_options)

  def layout(self, lanes: int) -> Layout:
    """Devices, groups and padding for a population of ``lanes``.

    Each device gets ``ceil(lanes / devices)`` lanes, split into as few groups
    of at most ``lanes_per_group`` as possible, of equal size; the total is
    padded up to ``devices * groups * group``. (A population smaller than the
    mesh is padded to one lane per device: the extra lanes run on devices that
    would otherwise idle, at no cost in wall time.)
    ``layout(layout(P).padded) == layout(P)``.
    """
    devices = self.num_devices
    per_device = -(-lanes // devices)
    limit = per_device if self.lanes_per_group is None else self.lanes_per_group
    groups = -(-per_device // limit)
    group = -(-per_device // groups)
    return Layout(devices, groups, group, devices * groups * group)

  def padded_size(self, lanes: int) -> int:
    """Lanes actually computed for a population of ``lanes``."""
    return self.layout(lanes).padded

  def _compiled(self, layout: Layout) -> dict[str, Callable]:
    """The ``init``, ``advance`` and ``evaluate`` programs for ``layout``, built
    once per layout and reused by every round."""
    if layout not in self._programs:
      lane, whole = PartitionSpec(LANES), PartitionSpec()

      def sharded(fn, shared: int, lanes: int = 1, grouped: Callable = _grouped):
        return jax.shard_map(
            grouped(fn, layout.group), mesh=self.mesh,
            in_specs=(lane,) * lanes + (whole,) * shared, out_specs=lane, check_vma=False)

      def compiled(fn, **kwargs):
        return jax.jit(fn, compiler_options=self.compiler_options, **kwargs)

      def init(hparams, key, x_train):
        hparams, key, _ = _split_replica(hparams, key, key)
        return self.init_one(hparams, key, x_train[:1])

      def advance(state, hparams, data_key, *shared):
        hparams, _, data_key = _split_replica(hparams, data_key, data_key)
        return self.segment_one(hparams, state, data_key, *shared)

      self._programs[layout] = {
          "init": compiled(sharded(init, 2)),
          # The lanes' state is donated and updated group by group in place, so
          # training holds one copy of the population's state, not two.
          "advance": compiled(sharded(advance, 5, lanes=2, grouped=_grouped_in_place),
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
    shared = put((self.round_keys(0, 0)[0], np.int32(0), np.int32(self.epochs)),
                 self._replicated)
    state = jax.eval_shape(programs["init"], hparams, shared[0], self._x_train)
    sharding = lane_sharding(self.mesh)
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                         state)
    with jax.default_matmul_precision(self._precision):
      compiled = programs["advance"].lower(state, hparams, shared[0], self._x_train,
                                           self._y_train, *shared[1:]).compile()
    stats = compiled.memory_analysis()
    if stats is None:
      return None
    resident = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                - stats.alias_size_in_bytes)
    return TrainingMemory(int(resident), int(stats.temp_size_in_bytes))

  def _fit_memory(self, hparams: Mapping[str, np.ndarray]) -> None:
    """Lowers ``lanes_per_group`` until a population of ``hparams``' size
    trains within ``memory_budget_bytes`` (checked once per new largest size:
    smaller populations then fit too).

    Raises:
      OutOfMemoryError: even one lane per group does not fit, or the lanes'
        state alone does not.
    """
    count = len(next(iter(hparams.values())))
    if count <= self._largest:
      return
    self._largest = count
    budget = self.memory_budget_bytes
    if budget is None:
      return
    layout = self.layout(count)
    memory = self.training_memory(list(hparams), layout)
    largest = layout.group - 1
    while memory is not None and memory.total > budget and layout.group > 1:
      # Temporaries grow about linearly with the chunk: aim at the budget
      # directly; where that was optimistic, at least halve the next try.
      aim = max(budget - memory.resident, 0) * layout.group // max(memory.working, 1)
      self.lanes_per_group = max(1, min(int(aim), largest))
      layout = self.layout(count)
      memory = self.training_memory(list(hparams), layout)
      largest = layout.group // 2
    if memory is not None and memory.total > budget:
      raise OutOfMemoryError(
          f"a population of {count} lanes needs {memory.total / 2**20:.1f} MiB per device to "
          f"train ({memory.resident / 2**20:.1f} MiB of lane state and data, "
          f"{memory.working / 2**20:.1f} MiB of temporaries for one lane at a time), more than "
          f"the budget of {budget / 2**20:.1f} MiB: use fewer lanes, more devices, or a smaller "
          "model or batch")

  def shrink_groups(self) -> bool:
    """Halves the lanes per group, after a device ran out of memory.

    Returns:
      ``False`` if groups already hold one lane (nothing left to shrink).
    """
    group = self.layout(max(self._largest, 1)).group
    if group <= 1:
      return False
    self.lanes_per_group = group // 2
    return True

  def put_batches(self, x: np.ndarray, y: np.ndarray) -> EvalBatches:
    """Pads and batches a split for evaluation and puts a copy on every device."""
    batches = eval_batches(Split(x, y), self.eval_batch_size)
    return EvalBatches(*put(tuple(batches), self._replicated))

  @staticmethod
  def round_keys(seed: int, round_index: int) -> tuple[jax.Array, jax.Array]:
    """The ``(init_key, data_key)`` every lane of a round shares.

    Sharing them is deliberate (common random numbers): within a round, lanes
    start from the same weights and see the same minibatches, so they differ
    only by their hyperparameters.
    """
    return _round_keys(np.uint32(seed), np.uint32(round_index))

  def init(self, hparams: Mapping[str, np.ndarray], init_key: jax.Array) -> Lanes:
    """Initialises one lane per configuration (all from ``init_key``).

    Args:
      hparams: ``{name: float32 [P]}``, one value per lane; with a ``REPLICA``
        entry (whole numbers), lane ``i`` initialises and later draws its
        minibatches from keys folded with ``hparams[REPLICA][i]`` (see
        :func:`replica_keys`) instead of sharing the round's.
      init_key: the shared initialisation key (see :meth:`round_keys`).
    """
    self._fit_memory(hparams)
    count = len(next(iter(hparams.values())))
    layout = self.layout(count)
    # Padding lanes repeat the last configuration: valid values, results ignored.
    padded = {k: _pad(np.asarray(v, np.float32), layout.padded) for k, v in hparams.items()}
    key = put(init_key, self._replicated)
    with jax.default_matmul_precision(self._precision):
      state = self._compiled(layout)["init"](padded, key, self._x_train)
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
    if len(lanes.state.diverged) != layout.padded:  # Laid out before the groups shrank.
      lanes = self.select(lanes, np.arange(lanes.count))
    shared = put((data_key, np.int32(first_epoch), np.int32(num_epochs)), self._replicated)
    with jax.default_matmul_precision(self._precision):
      state, losses = self._compiled(layout)["advance"](
          lanes.state, lanes.hparams, shared[0], self._x_train, self._y_train, *shared[1:])
    return lanes._replace(state=state), losses

  def advance_program(self, hparams: Mapping[str, np.ndarray]) -> tuple[Callable, tuple]:
    """The training program for a population of ``hparams`` (``{name: [P]}``)
    and the arguments it would get for epochs 0 to the budget, e.g. to
    ``.lower(*args)`` it or trace its jaxpr."""
    key = self.round_keys(0, 0)[0]
    lanes = self.init(hparams, key)
    args = (lanes.state, lanes.hparams, put(key, self._replicated),
            self._x_train, self._y_train, np.int32(0), np.int32(self.epochs))
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
    """Trains all lanes for the full budget: :meth:`init` then :meth:`advance`.

    Args:
      hparams: ``{name: float32 [P]}``, one value per lane.
      init_key, data_key: shared keys (see :meth:`round_keys`).

    Returns:
      :class:`TrainOutput` with ``params [L, ...]``, ``epoch_loss [L, epochs]``,
      ``diverged [L]`` for ``L = layout(P).padded``; arrays stay on device,
      sharded over the lanes.
    """
    lanes, losses = self.advance(self.init(hparams, init_key), data_key, 0, self.epochs)
    return TrainOutput(lanes.state.params, losses, lanes.state.diverged)

  def evaluate(self, params: Params, batches: EvalBatches | None = None) -> Evaluation:
    """Accuracy and loss of every lane on the validation split (or ``batches``),
    in one call: ``[L]`` each, for the ``L`` lanes of ``params`` padded as
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

  def fit_schedule(self, schedule: list[tuple[int, int, Mapping[str, float]]],
                   init_key: jax.Array, data_key: jax.Array) -> TrainOutput:
    """Trains one configuration alone (no lane axis) on this process's first
    device, following a hyperparameter schedule, as the final fit does (every
    process of a multi-process run trains the same copy).

    Args:
      schedule: ``[(first_epoch, end_epoch, hparams), ...]`` covering
        ``[0, end)`` without gaps: the lineage of a population-based-training
        lane, or a single ``(0, epochs, hparams)`` entry.
      init_key, data_key: the round's shared keys.
    """
    inputs = local((init_key, data_key, self._x_train, self._y_train), self._first)
    init_key, data_key, x, y = inputs
    losses = []
    with jax.default_matmul_precision(self._precision):
      first = {k: np.float32(v) for k, v in schedule[0][2].items()}
      state = self._init_one(first, init_key, x[:1])
      for start, end, hparams in schedule:
        scalars = {k: np.float32(v) for k, v in hparams.items()}
        state, loss = self._segment_one(scalars, state, data_key, x, y, np.int32(start),
                                        np.int32(end - start))
        losses.append(loss)
    # Each segment reports its own epochs and NaN elsewhere: merge them.
    epoch_loss = np.fmax.reduce(np.stack([np.asarray(loss) for loss in losses]), axis=0)
    return TrainOutput(state.params, epoch_loss, state.diverged)

  def fit_one(self, hparams: Mapping[str, float], init_key: jax.Array,
              data_key: jax.Array) -> TrainOutput:
    """Trains a single configuration alone for the full budget (see :meth:`fit_schedule`)."""
    return self.fit_schedule([(0, self.epochs, hparams)], init_key, data_key)

  def evaluate_one_lane(self, params: Params, batches: EvalBatches | None = None) -> Evaluation:
    """Accuracy and loss (scalars) of one unbatched parameter set, on this
    process's first device."""
    batches = local(self._val if batches is None else batches, self._first)
    with jax.default_matmul_precision(self._precision):
      return self._evaluate_one(local(params, self._first), batches)
