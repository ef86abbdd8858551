"""When one process of a multi-process run fails: the others stop within seconds.

Without this, the others would wait in their next collective for the failed
one (JAX's shutdown barrier holds a failed process for minutes, and a process
0 that waits for it holds the run). A process that fails tells every other
one why (:func:`abort_others`, called where the run directory cannot be
written, where ``vmaptune run`` stops on an error or on Ctrl-C, and for any
uncaught exception: :func:`watch_processes` wraps ``sys.excepthook``). On
every process a watchdog thread waits for such a word in the coordination
service's key-value store. A process failing itself ignores it; any other,
given :data:`FAILURE_GRACE_S` to end on its own (it may be failing the same
way), prints ``vmaptune: process <j> failed: <why>; process <i> stops`` and
ends with exit status 1, meeting the others at JAX's shutdown barrier on the
way out (within :data:`EXIT_GRACE_S`) so that they all exit at once. When
process 0 is gone without a word (killed, its host lost), JAX ends the others
itself: at once when the connection drops, else after
:data:`HEARTBEAT_TIMEOUT_S` without heartbeats; the watchdog prints
``vmaptune: lost process 0 (the coordinator)`` when it notices first. Another
process killed without a word is noticed by JAX after
:data:`HEARTBEAT_TIMEOUT_S`. A process that hangs but lives keeps sending
heartbeats: nothing ends the others then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from typing import Any

HEARTBEAT_TIMEOUT_S = 15
"""Seconds without heartbeats after which JAX takes a process for dead and ends
the others (heartbeats come from a thread of JAX's own, so a busy process still
sends them)."""
COORDINATOR_LINGER_S = 1.0
"""How long process 0, told to stop, keeps the coordination service up after the
shutdown barrier, for the others' last calls to it."""
EXIT_GRACE_S = 5.0
"""How long a process told to stop waits at JAX's shutdown barrier for the
others before it leaves without them (they then wait for its heartbeats to
time out, :data:`HEARTBEAT_TIMEOUT_S`)."""
FAILURE_GRACE_S = 2.0
"""How long a process told that another failed waits for its own main thread to
end (with its own error, when every process fails the same way) before it stops."""
# Per process: "failed:<index of the process that failed>:<why>", or "done" at its own exit.
_STOP_KEY = "vmaptune/stop/{}"
_FAILED, _DONE = "failed:", "done"
_WAIT_MS = 60_000  # One wait of the watchdog; a timed-out wait just starts the next.
_MESSAGE_CHARS = 2000



class _Watch:
  """This process's side of :func:`abort_others` (one per process: module state)."""

  def __init__(self):
    self.client: Any = None  # The JAX coordination client watched (None: not yet).
    self.thread: threading.Thread | None = None  # The watchdog.
    self.aborted = False  # This process failed and told the others.
    self.disarmed = False  # A normal end: the watchdog's wait ending means nothing.
    self.stopping = False  # The watchdog is ending this process.
    self.excepthook: Any = None  # The hook ours wraps.
    self.ending = threading.Event()  # This process ends on its own (failed, or done).


_watch = _Watch()


def _coordination() -> tuple[Any, int, int] | None:
  """JAX's coordination client, this process's id and the process count, or
  ``None`` when this is not a run of several processes (starts no backend)."""
  from jax._src import distributed as jax_distributed
  state = jax_distributed.global_state
  if state.client is None or state.num_processes <= 1:
    return None
  return state.client, state.process_id, state.num_processes


def abort_others(message: str) -> None:
  """Tells every other process of the run that this one failed, and why: they stop
  at once (see the module).

  Call it where a failure ends this process (it is called for an uncaught
  exception), just before it stops: the others wait for it at JAX's shutdown
  barrier for :data:`EXIT_GRACE_S`. In a single process, and on every call
  after the first, it does nothing; it never raises.

  Args:
    message: why this process stops; the others print it on one line.
  """
  try:
    found = _coordination()
    if found is None or _watch.aborted:
      return
    client, index, count = found
    _watch.aborted = True
    _watch.ending.set()
    text = " ".join(str(message).split())[:_MESSAGE_CHARS] or "(no message)"
    for other in range(count):
      if other != index:
        with contextlib.suppress(Exception):  # Tell the rest even if one cannot be told.
          client.key_value_set(_STOP_KEY.format(other), f"{_FAILED}{index}:{text}",
                               allow_overwrite=True)
  except Exception:  # On a failure path: the failure itself is what must be reported.
    pass


def watch_processes() -> None:
  """Once joined: this process's uncaught exceptions reach the others, and a
  watchdog thread waits for word that another failed (:func:`abort_others`)."""
  found = _coordination()
  if found is None or _watch.client is found[0]:
    return
  client, index, _ = found
  _watch.client = client
  if _watch.excepthook is None:
    _watch.excepthook, sys.excepthook = sys.excepthook, _excepthook
  _watch.thread = threading.Thread(target=_wait_for_others, args=(client, index),
                                   name="vmaptune-watchdog", daemon=True)
  # atexit runs hooks last-registered first: this one before JAX's (registered when
  # jax was imported), which shuts the client down under the watchdog's wait.
  atexit.register(_disarm, index)
  _watch.thread.start()


def _excepthook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
  if _watch.stopping:
    return  # The watchdog is ending this process and said why; this error follows from it.
  if not hasattr(sys, "ps1"):  # Not interactive: the process ends with this error.
    abort_others(f"{kind.__name__}: {error}" if str(error) else kind.__name__)
  _watch.excepthook(kind, error, traceback)


def _wait_for_others(client: Any, index: int) -> None:
  """The watchdog: waits for word that another process failed, then ends this
  process (after :data:`FAILURE_GRACE_S`), whatever its main thread waits for."""
  while True:
    try:
      value = client.blocking_key_value_get(_STOP_KEY.format(index), _WAIT_MS)
    except Exception as error:  # JAX's runtime error; its text names the status.
      text = str(error)
      if _watch.disarmed or "CANCELLED" in text:
        return  # This process's client was shut down: a normal end.
      if "DEADLINE_EXCEEDED" in text:
        continue
      if index == 0:
        return  # The coordination service is this process's own: JAX reports its failure.
      reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
      _stop(index, f"lost process 0 (the coordinator): {reason}", None)
      return
    if _watch.disarmed or not value.startswith(_FAILED):
      return
    failed, _, why = value[len(_FAILED):].partition(":")
    if _watch.ending.wait(FAILURE_GRACE_S):
      return  # This process ends on its own, saying why.
    _stop(index, f"process {failed} failed: {why}", client)
    return


def _stop(index: int, reason: str, client: Any) -> None:
  """Ends this process at once (its main thread may be stuck in a collective)."""
  _watch.stopping = True
  print(f"vmaptune: {reason}; process {index} stops", file=sys.stderr, flush=True)
  if client is not None:
    # Meet the others at JAX's shutdown barrier, which they reach as they exit: else
    # they wait there until this process's heartbeats time out, then JAX aborts them.
    leaving = threading.Thread(target=client.shutdown, daemon=True)
    leaving.start()
    leaving.join(EXIT_GRACE_S)
    if index == 0:
      # Process 0 holds the coordination service: leaving at once closes it under the
      # others' last shutdown calls, which JAX then ends with an abort (exit -6, not 1).
      time.sleep(COORDINATOR_LINGER_S)
  for stream in (sys.stdout, sys.stderr):
    with contextlib.suppress(Exception):
      stream.flush()
  os._exit(1)


def _disarm(index: int) -> None:
  """At exit: stops the watchdog before JAX shuts the client down (a thread still
  in JAX's wait when the interpreter finalises aborts the process)."""
  thread = _watch.thread
  if thread is None or not thread.is_alive():
    return
  if _watch.stopping:
    thread.join(EXIT_GRACE_S + 5)  # It ends the process; JAX's exit hook must not run meanwhile.
    return
  _watch.disarmed = True
  _watch.ending.set()
  with contextlib.suppress(Exception):  # Wakes the watchdog's wait.
    _watch.client.key_value_set(_STOP_KEY.format(index), _DONE, allow_overwrite=True)
  thread.join(5)
