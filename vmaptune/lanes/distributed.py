"""One run over several processes (hosts): ``jax.distributed`` set-up and who writes.

Every process runs the same program on the same settings and seed, so every
one computes the same host values (sampled hyperparameters, keys, rankings).
The lane mesh then holds the devices of all processes; each process feeds and
computes its own devices' shards, device results are gathered on every process
(:func:`vmaptune.lanes.devices.to_host`), and only process 0 writes the run
directory. Each process returns the same :class:`~vmaptune.search.results.TuneResult`.

:func:`initialize` must run before JAX computes anything. It takes the
coordinator address, the number of processes and this process's id from its
arguments (the ``vmaptune run`` flags ``--coordinator``, ``--num-processes``,
``--process-id``, or an experiment's fields of the same names), else from the
environment variables ``VMAPTUNE_COORDINATOR``, ``VMAPTUNE_NUM_PROCESSES``,
``VMAPTUNE_PROCESS_ID`` (JAX reads none for the last two; for the address it
also honours its own ``JAX_COORDINATOR_ADDRESS``). Given none of them, it
leaves the detection to JAX (SLURM, Open MPI, Cloud TPU pods, ...) when such a
cluster with more than one process is found (only before JAX has run
anything), and otherwise does nothing: one process.

**When a process fails**, the others stop within seconds: see
:mod:`vmaptune.lanes.watchdog` (:func:`abort_others`; its watchdog is started by
:func:`initialize`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

from vmaptune import errors
from vmaptune.errors import DistributedError
from vmaptune.lanes import watchdog
from vmaptune.lanes.devices import backend_started, configure_cpu_devices
from vmaptune.lanes.watchdog import HEARTBEAT_TIMEOUT_S, abort_others
from vmaptune.validation import whole_number

__all__ = ["ENV_COORDINATOR", "ENV_NUM_PROCESSES", "ENV_PROCESS_ID", "HEARTBEAT_TIMEOUT_S",
           "Processes", "abort_others", "current", "initialize", "is_first_process",
           "on_first_process", "settings", "share_from_first_process"]

ENV_COORDINATOR = "VMAPTUNE_COORDINATOR"
ENV_NUM_PROCESSES = "VMAPTUNE_NUM_PROCESSES"
ENV_PROCESS_ID = "VMAPTUNE_PROCESS_ID"

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Processes:
  """The processes of a run.

  Attributes:
    num_processes: processes taking part (1: a single-process run).
    process_id: this process's index, ``0 <= process_id < num_processes``.
    coordinator: ``HOST:PORT`` of process 0's coordinator, ``None`` when
      JAX's distributed system was not started.
  """

  num_processes: int = 1
  process_id: int = 0
  coordinator: str | None = None

  @property
  def writes(self) -> bool:
    """Whether this process writes records (only process 0 does)."""
    return self.process_id == 0


def _check_coordinator(value: Any, source: str) -> str:
  text = str(value).strip() if value is not None else ""
  host, sep, port = text.rpartition(":")
  if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise DistributedError(f"{source}={value!r}; expected HOST:PORT, the address of process "
                           "0 and a free port on it, e.g. 10.0.0.1:12345 or localhost:12345")
  return text


def _check_whole(value: Any, source: str, minimum: int) -> int:
  if isinstance(value, str) and value.strip().isdigit():
    value = int(value.strip())
  return whole_number(source, value, minimum, error=DistributedError)


def settings(coordinator: str | None = None, num_processes: int | None = None,
             process_id: int | None = None,
             environ: Mapping[str, str] | None = None) -> dict[str, Any]:
  """The requested multi-process settings: arguments first, then environment variables.

  Args:
    coordinator: ``HOST:PORT`` of process 0 (``None``: ``$VMAPTUNE_COORDINATOR``).
    num_processes: processes in the run (``None``: ``$VMAPTUNE_NUM_PROCESSES``).
    process_id: this process's index (``None``: ``$VMAPTUNE_PROCESS_ID``).
    environ: the environment to read (default ``os.environ``).

  Returns:
    ``{"coordinator", "num_processes", "process_id"}``, each checked, or
    ``None`` where neither an argument nor a variable gave it.

  Raises:
    DistributedError: a malformed value (the message names it and where it
      came from) or a process id outside ``[0, num_processes)``.

  >>> settings("localhost:1234", 2, 1, environ={})
  {'coordinator': 'localhost:1234', 'num_processes': 2, 'process_id': 1}
  """
  environ = os.environ if environ is None else environ
  found: dict[str, Any] = {}
  for name, value, variable, check in (
      ("coordinator", coordinator, ENV_COORDINATOR, _check_coordinator),
      ("num_processes", num_processes, ENV_NUM_PROCESSES,
       lambda v, source: _check_whole(v, source, 1)),
      ("process_id", process_id, ENV_PROCESS_ID, lambda v, source: _check_whole(v, source, 0))):
    source = name
    if value is None and environ.get(variable, "").strip():
      value, source = environ[variable], variable
    found[name] = None if value is None else check(value, source)
  count, index = found["num_processes"], found["process_id"]
  if count is not None and index is not None and index >= count:
    raise DistributedError(f"process_id={index} with num_processes={count}; expected a "
                           f"process id in [0, {count - 1}]")
  return found


def _detected_cluster() -> tuple[str, int] | None:
  """A cluster JAX can configure itself from (SLURM, Open MPI, TPU pods, ...):
  its name and process count, or ``None``. Uses JAX's own detectors."""
  try:
    from jax._src.clusters import ClusterEnv
    with warnings.catch_warnings():  # E.g. "Kubernetes detected, package missing".
      warnings.simplefilter("ignore")
      for env in ClusterEnv._cluster_types:
        if not env.opt_in_only_method and env.is_env_present():
          return env.__name__, int(env.get_process_count())
  except Exception:  # A JAX without these internals, or a detector that failed.
    return None
  return None


def current() -> Processes:
  """The processes of this run, as JAX sees them (one when not distributed)."""
  if not jax.distributed.is_initialized():
    return Processes()
  from jax._src import distributed as jax_distributed
  return Processes(jax.process_count(), jax.process_index(),
                   getattr(jax_distributed.global_state, "coordinator_address", None))


def is_first_process() -> bool:
  """Whether this is process 0 (always, in a single-process run); only it writes.

  Starts no JAX backend when the run is not distributed."""
  return not jax.distributed.is_initialized() or jax.process_index() == 0


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout_s: int = 300) -> Processes:
  """Joins this process to a multi-process run, if one is asked for.

  Call it before anything runs on JAX (``vmaptune run`` does). The values come
  from the arguments, else from ``VMAPTUNE_COORDINATOR``,
  ``VMAPTUNE_NUM_PROCESSES`` and ``VMAPTUNE_PROCESS_ID``; given none, from a
  cluster JAX detects (SLURM, Open MPI, Cloud TPU pods) if it has more than one
  process; otherwise nothing happens. Calling it again once joined checks the
  values and changes nothing.

  Args:
    coordinator: ``HOST:PORT`` where process 0 serves the coordinator; the
      same on every process.
    num_processes: processes in the run; the same on every process.
    process_id: this process's index, ``0`` to ``num_processes - 1``.
    timeout_s: how long to wait for the other processes to join.

  Returns:
    The run's :class:`Processes`.

  Raises:
    DistributedError: a malformed or incomplete setting, or JAX already ran
      something in this process (too late to join).
  """
  configure_cpu_devices()  # Before JAX starts: each process's share of the lanes' devices.
  requested = settings(coordinator, num_processes, process_id)
  given = {k: v for k, v in requested.items() if v is not None}
  if jax.distributed.is_initialized():
    have = current()
    clash = {k: v for k, v in given.items() if k != "coordinator" and getattr(have, k) != v}
    if clash:
      raise DistributedError(f"this process already joined a run as process "
                             f"{have.process_id} of {have.num_processes}; asked for {clash}")
    watchdog.watch_processes()  # Joined by jax.distributed.initialize itself, perhaps.
    return have
  if given.get("num_processes") == 1:
    return Processes()  # One process needs no coordinator.
  if not given:
    # Nothing asked for: a cluster JAX recognises, if JAX has not started yet.
    cluster = None if backend_started() else _detected_cluster()
    if cluster is None or cluster[1] <= 1:
      return Processes()
    where = f"the {cluster[0]} environment"
  else:
    missing = [k for k, v in requested.items() if v is None]
    if "coordinator" in missing and os.environ.get("JAX_COORDINATOR_ADDRESS"):
      missing.remove("coordinator")  # JAX reads its own variable.
    if missing and _detected_cluster() is None:  # Else JAX fills them in from the cluster.
      flags = {"coordinator": "--coordinator / " + ENV_COORDINATOR,
               "num_processes": "--num-processes / " + ENV_NUM_PROCESSES,
               "process_id": "--process-id / " + ENV_PROCESS_ID}
      raise DistributedError(
          f"a multi-process run needs the coordinator address, the number of processes and "
          f"this process's id; got {given} but no {', '.join(flags[m] for m in missing)}")
    where = ", ".join(f"{k}={v!r}" for k, v in given.items())
  if backend_started():
    raise DistributedError(f"cannot join a multi-process run ({where}): JAX has already "
                           "run something in this process. Initialise first: "
                           "vmaptune.lanes.distributed.initialize(...) at the top of the script, "
                           "before any JAX computation")
  if jax.config.jax_cpu_collectives_implementation is None:
    # Cross-process collectives on CPU (gathering results) need an implementation.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=requested["coordinator"],
                             num_processes=requested["num_processes"],
                             process_id=requested["process_id"],
                             initialization_timeout=timeout_s,
                             heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
  watchdog.watch_processes()
  return current()


def share_from_first_process(data: bytes | None) -> bytes:
  """Process 0's ``data`` on every process (a collective when there are several).

  Used to hand what only process 0 can read (a resumed run's records) to the
  others, so that every process continues from the same rounds.

  Args:
    data: the bytes to share, on process 0; ignored on the others.

  Returns:
    Process 0's bytes.
  """
  if not jax.distributed.is_initialized() or jax.process_count() == 1:
    return bytes(data or b"")
  first = jax.process_index() == 0
  size = int(multihost_utils.broadcast_one_to_all(np.int64(len(data or b"") if first else 0)))
  buffer = np.zeros(max(size, 1), np.uint8)  # A zero-length array cannot be broadcast.
  if first and size:
    buffer[:size] = np.frombuffer(data, np.uint8)
  return np.asarray(multihost_utils.broadcast_one_to_all(buffer))[:size].tobytes()


def agree(value: float) -> float:
  """Process 0's ``value`` on every process (a collective when there are several;
  float32). A decision made from a clock, such as a wall-time budget's plan, is
  one process's for all: decided by each, the processes could train different
  rounds and wait on one another for ever."""
  if not jax.distributed.is_initialized() or jax.process_count() == 1:
    return value
  return float(multihost_utils.broadcast_one_to_all(np.float32(value)))


def on_first_process(fn: Callable[[], T]) -> T | None:
  """Runs ``fn`` on process 0 only; if it raised there, every process raises.

  A collective when the run has several processes: all must call it at the
  same point. Used to create the run directory, so that a refused directory
  stops every process instead of leaving the others waiting for process 0.

  Returns:
    ``fn()`` on process 0, ``None`` elsewhere.
  """
  if not jax.distributed.is_initialized() or jax.process_count() == 1:
    return fn()
  value, error = None, None
  if jax.process_index() == 0:
    try:
      value = fn()
    except Exception as e:  # Shared with the other processes, then raised.
      error = e
  message = np.zeros(1024, np.uint8)
  if error is not None:
    text = f"{type(error).__name__}: {error}".encode()[:1023] or b"error"
    message[:len(text)] = np.frombuffer(text, np.uint8)
  message = multihost_utils.broadcast_one_to_all(message)
  if error is not None:
    raise error
  text = bytes(message[message > 0]).decode(errors="replace")
  if not text:
    return value
  kind, _, detail = text.partition(": ")
  refused = getattr(errors, kind, None)  # One of vmaptune's errors: a user error, as on 0.
  if isinstance(refused, type) and issubclass(refused, errors.VmaptuneError):
    raise refused(f"{detail} (raised on process 0)")
  if kind == "FileExistsError":
    raise FileExistsError(f"{detail} (raised on process 0)")
  raise RuntimeError(f"process 0 failed: {text}")
