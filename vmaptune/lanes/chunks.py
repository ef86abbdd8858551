"""How a device's lanes are laid out in chunks, and how much memory a chunk needs.

Within a device, lanes run in chunks of ``Layout.chunk`` lanes: vmapped inside
a chunk, looped over chunks in the same compiled program, so a device's
training working set (activations, gradients, optimizer temporaries) is one
chunk's. On a CPU a chunk is sized to stay in cache, which the layout
ablation in ``experiments/bench_throughput.py`` measured ~1.5x faster than
one vmap over all of a device's lanes (digits MLP, P=256); on a GPU or TPU one
chunk holds every lane (the widest matmuls) unless the compiled program's
memory analysis says it would not fit in the device's free memory.

>>> import jax.numpy as jnp
>>> double = chunked(lambda lane, scale: lane * scale, chunk=2)
>>> double(jnp.arange(4.0), 2.0).tolist()
[0.0, 2.0, 4.0, 6.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax

from vmaptune.errors import OutOfMemoryError

# Per-device working set a CPU chunk aims for: with ~1 MiB of L2 per core and a
# shared L3, chunks of 4 to 32 digits-MLP lanes (~0.4 MiB each) ran at the same
# speed and 64 ran slower (the layout ablation of bench_throughput.py).
CPU_CHUNK_BYTES = 4 << 20

# Share of a device's free memory a training program may plan to use: the rest
# is headroom for evaluation, gathers and the allocator's fragmentation.
MEMORY_HEADROOM = 0.9


class Layout(NamedTuple):
  """How a population of lanes is laid out: ``devices`` used, ``chunks`` of
  ``chunk`` lanes on each, ``padded`` lanes in all (``>=`` the lanes asked for)."""
  devices: int
  chunks: int
  chunk: int
  padded: int


def layout(lanes: int, devices: int, lanes_per_chunk: int | None) -> Layout:
  """Each device gets ``ceil(lanes / devices)`` lanes, split into as few chunks
  of at most ``lanes_per_chunk`` (``None``: no limit) as possible, of equal
  size; the total is padded up to ``devices * chunks * chunk``.

  >>> layout(10, 2, 2)
  Layout(devices=2, chunks=3, chunk=2, padded=12)
  """
  per_device = -(-lanes // devices)
  limit = per_device if lanes_per_chunk is None else lanes_per_chunk
  chunks = -(-per_device // limit)
  chunk = -(-per_device // chunks)
  return Layout(devices, chunks, chunk, devices * chunks * chunk)


class TrainingMemory(NamedTuple):
  """Bytes one device needs to train a layout, from the compiled program.

  Attributes:
    resident: the lanes' state and hyperparameters in and out, and the
      replicated training data: independent of the chunk size.
    working: the program's temporaries (one chunk's activations, gradients and
      optimizer intermediates): proportional to the chunk size.
  """
  resident: int
  working: int

  @property
  def total(self) -> int:
    return self.resident + self.working


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


def cpu_chunk(model: nn.Module, inputs: Any) -> int:
  """Lanes per chunk on CPU: as many as fit :data:`CPU_CHUNK_BYTES` with a
  training batch of ``inputs`` (shapes), at least one."""
  params = jax.eval_shape(model.init, jax.random.key(0), inputs)["params"]
  return max(1, CPU_CHUNK_BYTES // lane_footprint_bytes(model, params, inputs))


def chunked(fn: Callable, chunk: int) -> Callable:
  """``fn`` over a leading lane axis: vmapped within chunks of ``chunk`` lanes,
  looped over chunks. The first argument is per-lane (any pytree); the rest
  are shared (``in_axes=None``)."""

  def run(per_lane, *shared):
    lanes = jax.tree.leaves(per_lane)[0].shape[0]
    if chunk >= lanes:
      return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(per_lane, *shared)
    # batch_size=1 would take lax.map's batched path, whose temporaries held a
    # whole stacked copy of the outputs (digits MLP: 90x the plain loop's).
    return jax.lax.map(lambda lane: fn(lane, *shared), per_lane,
                       batch_size=chunk if chunk > 1 else None)

  return run


def chunked_in_place(fn: Callable, chunk: int) -> Callable:
  """Like :func:`chunked` for ``fn(state, per_lane, *shared) -> (state, out)``
  whose first argument is updated: each chunk's slice of ``state`` is
  overwritten in place by its result (``dynamic_update_slice`` on the loop
  carry), so with ``state`` donated the program holds one copy of the
  population's state plus one chunk's temporaries."""
  vmapped = lambda state, per_lane, *shared: jax.vmap(
      fn, in_axes=(0, 0) + (None,) * len(shared))(state, per_lane, *shared)

  def run(state, per_lane, *shared):
    lanes = jax.tree.leaves(state)[0].shape[0]
    if chunk >= lanes:
      return vmapped(state, per_lane, *shared)

    def take(tree, start):
      return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk), tree)

    def put(tree, part, start):
      return jax.tree.map(lambda a, b: jax.lax.dynamic_update_slice_in_dim(a, b, start, 0),
                          tree, part)

    first = jax.eval_shape(vmapped, take(state, 0), take(per_lane, 0), *shared)[1]
    out = jax.tree.map(lambda s: jax.numpy.zeros((lanes,) + s.shape[1:], s.dtype), first)

    def body(index, carry):
      state, out = carry
      start = index * chunk
      new_state, new_out = vmapped(take(state, start), take(per_lane, start), *shared)
      return put(state, new_state, start), put(out, new_out, start)

    return jax.lax.fori_loop(0, lanes // chunk, body, (state, out))

  return run


def fit_chunk(measure: Callable[[int | None], tuple[Layout, TrainingMemory | None]],
              lanes_per_chunk: int | None, lanes: int, budget: int) -> None:
  """Lowers the lanes per chunk until a population of ``lanes`` trains within
  ``budget`` bytes per device.

  Args:
    measure: sets the lanes per chunk and returns the population's layout and
      its compiled training program's memory (``None``: the backend says nothing).
    lanes_per_chunk: the current setting (``None``: every lane of a device).
    lanes: the population's size.
    budget: bytes per device the training program may use.

  Raises:
    OutOfMemoryError: even one lane per chunk does not fit (the lanes' state
      alone does not).
  """
  layout, memory = measure(lanes_per_chunk)
  largest = layout.chunk - 1
  while memory is not None and memory.total > budget and layout.chunk > 1:
    # Temporaries grow about linearly with the chunk: aim at the budget
    # directly; where that was optimistic, at least halve the next try.
    aim = max(budget - memory.resident, 0) * layout.chunk // max(memory.working, 1)
    layout, memory = measure(max(1, min(int(aim), largest)))
    largest = layout.chunk // 2
  if memory is not None and memory.total > budget:
    raise OutOfMemoryError(
        f"a population of {lanes} lanes needs {memory.total / 2**20:.1f} MiB per device to "
        f"train ({memory.resident / 2**20:.1f} MiB of lane state and data, "
        f"{memory.working / 2**20:.1f} MiB of temporaries for one lane at a time), more than "
        f"the budget of {budget / 2**20:.1f} MiB: use fewer lanes, more devices, or a smaller "
        "model or batch")
