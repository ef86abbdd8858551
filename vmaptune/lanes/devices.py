"""Which devices the lanes run on: one CPU device per core, a 1-D mesh of lanes,
and moving values between the host and that mesh when it spans several processes.

XLA gives a CPU process one device by default, and one program on it keeps
both cores of a 2-core machine only partly busy. Exposing one CPU device per
usable core and sharding the lane axis across them runs the shards truly in
parallel (see docs/benchmarks.md for the measured effect). The count must be
set before JAX starts its CPU backend, so :func:`configure_cpu_devices` runs
at the start of :func:`vmaptune.tune` and of ``vmaptune run`` (importing
vmaptune changes nothing; a script that runs JAX code before ``tune`` calls it
first). It changes nothing when ``XLA_FLAGS`` or ``jax_num_cpu_devices``
already set a count, and ``VMAPTUNE_CPU_DEVICES=N`` chooses the number (1
turns it off). Each CPU device holds its own copy of the training data.

When a run spans several processes (see :mod:`vmaptune.lanes.distributed`), the
mesh holds every device of every process and each process can read and write
only its own devices' shards. :func:`put`, :func:`to_host` and :func:`local`
move values across that boundary; in a single process they are plain
``jax.device_put`` and ``np.asarray`` calls.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_FLAG = "--xla_force_host_platform_device_count"
LANES = "lanes"


def backend_started() -> bool:
  """Whether JAX has started a backend in this process (too late to change its devices)."""
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # A JAX without the helper: assume started.
    return True


def _cgroup_cpu_limit() -> float | None:
  """CPUs granted by a container's cgroup quota (v2 ``cpu.max`` or v1), if any."""
  candidates = (("/sys/fs/cgroup/cpu.max", None),
                ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
  for quota_path, period_path in candidates:
    try:
      with open(quota_path) as f:
        fields = f.read().split()
      if period_path:
        with open(period_path) as f:
          fields = fields[:1] + f.read().split()[:1]
    except OSError:
      continue
    if len(fields) >= 2 and fields[0] not in ("max", "-1"):
      return int(fields[0]) / int(fields[1])
  return None


def usable_cores() -> int:
  """Cores this process may use: its CPU affinity, capped by any cgroup quota."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
      else (os.cpu_count() or 1)
  limit = _cgroup_cpu_limit()
  if limit is not None:
    cores = min(cores, max(1, math.floor(limit)))
  return cores


def _requested_count() -> int:
  setting = os.environ.get("VMAPTUNE_CPU_DEVICES", "").strip()
  if setting:
    if setting.isdigit() and int(setting) >= 1:
      return int(setting)
    warnings.warn(f"VMAPTUNE_CPU_DEVICES={setting!r} is not a whole number >= 1; "
                  "using one CPU device per usable core", stacklevel=3)
  return usable_cores()


def configure_cpu_devices(count: int | None = None, *, stacklevel: int = 2) -> int | None:
  """Asks JAX for ``count`` CPU devices (default: ``VMAPTUNE_CPU_DEVICES``, else
  one per usable core) while that is still possible.

  Args:
    count: the devices to ask for.
    stacklevel: the frame a warning names (2: this function's caller).

  Returns:
    The count set, or ``None`` when nothing was changed. Warns if JAX's
    backend already started with fewer CPU devices than asked for.
  """
  count = _requested_count() if count is None else count
  already_set = (_FLAG in os.environ.get("XLA_FLAGS", "")
                 or jax.config.jax_num_cpu_devices not in (-1, None))
  if already_set or count <= 1:
    return None
  if backend_started():
    have = len(jax.devices("cpu"))
    if have < count and jax.default_backend() == "cpu":
      warnings.warn(f"JAX started before vmaptune could ask for {count} CPU devices; lanes "
                    f"will run on {have}. Call vmaptune.lanes.devices.configure_cpu_devices() "
                    "before running any JAX code (or set VMAPTUNE_CPU_DEVICES=1 to silence "
                    "this).", stacklevel=stacklevel)
    return None
  jax.config.update("jax_num_cpu_devices", count)
  return count


def lane_mesh(devices: list | None = None) -> Mesh:
  """A 1-D mesh named ``"lanes"`` over ``devices`` (default: every device of
  the default platform, in every process of the run)."""
  devices = list(devices) if devices is not None else jax.devices()
  return Mesh(np.array(devices), (LANES,))


def lane_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (lane) axis split across the mesh; other axes whole."""
  return NamedSharding(mesh, PartitionSpec(LANES))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh (data, keys)."""
  return NamedSharding(mesh, PartitionSpec())


def put(tree: Any, sharding: NamedSharding) -> Any:
  """``jax.device_put(tree, sharding)``, also when ``sharding`` spans devices of
  other processes.

  Every process must call it with the same values (the run computes them from
  the same seed); each then transfers only its own devices' shards. JAX's
  ``device_put`` accepts a NumPy array for such a sharding but refuses a
  ``jax.Array`` held by one process (a round's keys), which is first brought to
  the host. In a single process this is exactly ``jax.device_put``.
  """
  if sharding.is_fully_addressable:
    return jax.device_put(tree, sharding)
  return jax.tree.map(lambda x: _put_global(x, sharding), tree)


def _put_global(x: Any, sharding: NamedSharding) -> jax.Array:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return x if x.sharding == sharding else jax.device_put(x, sharding)
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    data = _put_global(jax.random.key_data(x), sharding)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
  return jax.device_put(np.asarray(x), sharding)


def to_host(tree: Any) -> Any:
  """NumPy copies of the arrays of ``tree``, gathered from every process.

  An array sharded over devices of several processes is gathered with
  ``multihost_utils.process_allgather`` (a collective: every process must
  call this with the same tree); anything else, including every array of a
  single-process run, is simply ``np.asarray``.
  """
  def one(x: Any) -> np.ndarray:
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)

  return jax.tree.map(one, tree)


# One lane of a lane-axis tree, traced once per tree structure (the index is traced).
_take_lane = jax.jit(lambda tree, index: jax.tree.map(lambda a: a[index], tree))


def lane_to_host(tree: Any, index: int) -> Any:
  """Lane ``index`` of a tree of ``[L, ...]`` arrays as NumPy ``[...]`` arrays,
  gathered from every process (a collective, like :func:`to_host`)."""
  return to_host(_take_lane(tree, np.int32(index)))


def first_lane_to_host(tree: Any) -> Any:
  """Lane 0 of a tree of ``[L, ...]`` arrays as NumPy ``[...]`` arrays, copied
  from the device shard that holds it (every lane of it), so nothing compiles;
  :func:`lane_to_host` where this process holds no such shard."""
  def one(x: Any) -> np.ndarray:
    shard = next((s for s in getattr(x, "addressable_shards", ())
                  if (s.index[0].start or 0) == 0), None)
    return np.asarray(x)[0] if shard is None else np.asarray(shard.data)[0]

  if any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in jax.tree.leaves(tree)):
    return lane_to_host(tree, 0)
  return jax.tree.map(one, tree)


def local(tree: Any, device: jax.Device) -> Any:
  """``tree`` on one of this process's devices.

  Arrays replicated over a mesh that spans other processes are taken from
  this process's own copy (``jax.device_put`` refuses them); in a single
  process this is exactly ``jax.device_put(tree, device)``.
  """
  def one(x: Any) -> Any:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if not x.is_fully_replicated:
        raise ValueError(f"an array sharded as {x.sharding} has no whole copy on {device}")
      shards = {shard.device: shard.data for shard in x.addressable_shards}
      x = shards.get(device, next(iter(shards.values())))
    return jax.device_put(x, device)

  return jax.tree.map(one, tree)


def first_local_device(mesh: Mesh) -> jax.Device:
  """The first device of ``mesh`` that this process can use."""
  here = jax.process_index()
  return next(d for d in mesh.devices.flat if d.process_index == here)
