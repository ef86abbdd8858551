"""Which devices the lanes run on: one CPU device per core, a 1-D mesh of lanes.

XLA gives a CPU process one device by default, and one program on it keeps
both cores of a 2-core machine only partly busy. Exposing one CPU device per
core and sharding the lane axis across them runs the shards truly in parallel
(measured: ~2x on 2 cores for the digits MLP; see experiments/bench_throughput.py).
The flag must be set before JAX starts its CPU backend, so
:func:`configure_cpu_devices` runs when ``vmaptune`` is imported. It changes
nothing when ``XLA_FLAGS`` already sets a device count, when the backend has
already started, or when ``VMAPTUNE_CPU_DEVICES`` says otherwise.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_FLAG = "--xla_force_host_platform_device_count"
LANES = "lanes"


def _backend_started() -> bool:
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # A JAX without the helper: assume started.
    return True


def configure_cpu_devices(count: int | None = None) -> int | None:
  """Asks XLA for ``count`` CPU devices (default: ``VMAPTUNE_CPU_DEVICES`` or the
  number of usable cores) if that is still possible.

  Returns:
    The count requested, or ``None`` when nothing was changed.
  """
  if count is None:
    setting = os.environ.get("VMAPTUNE_CPU_DEVICES", "").strip()
    if setting:
      if not setting.isdigit() or int(setting) < 1:
        raise ValueError(f"VMAPTUNE_CPU_DEVICES={setting!r}; expected a whole number >= 1")
      count = int(setting)
    else:
      count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
          else (os.cpu_count() or 1)
  flags = os.environ.get("XLA_FLAGS", "")
  if _FLAG in flags or _backend_started() or count <= 1:
    return None
  os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={count}".strip()
  return count


def lane_mesh(devices: list | None = None) -> Mesh:
  """A 1-D mesh named ``"lanes"`` over ``devices`` (default: every local device
  of the default platform)."""
  devices = list(devices) if devices is not None else jax.local_devices()
  return Mesh(np.array(devices), (LANES,))


def lane_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (lane) axis split across the mesh; other axes whole."""
  return NamedSharding(mesh, PartitionSpec(LANES))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh (data, keys)."""
  return NamedSharding(mesh, PartitionSpec())
