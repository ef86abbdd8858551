"""When process 0 of a multi-process run fails: the others stop within seconds.

Without this, the others would wait in their next collective until JAX
noticed (100 s of missed heartbeats by default). Process 0 tells them why
(:func:`abort_others`, called where the run directory cannot be written, on
Ctrl-C, and for any uncaught exception: :func:`watch_process_0` wraps
``sys.excepthook``); on every other process a watchdog thread waits for that
word in the coordination service's key-value store, prints ``vmaptune:
process 0 failed: <why>; process <i> stops`` and ends the process with exit
status 1, meeting process 0 at JAX's shutdown barrier on the way out (within
:data:`EXIT_GRACE_S`) so that process 0 exits at once too, with its own
status. When process 0 is gone without a word (killed, its host lost), JAX
ends the others itself: at once when the connection drops, else after
:data:`HEARTBEAT_TIMEOUT_S` without heartbeats (JAX's default is 100 s); the
watchdog prints ``vmaptune: lost process 0 (the coordinator)`` when it
notices first. A process 0 that hangs but lives keeps sending heartbeats:
nothing ends the others then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import Any

HEARTBEAT_TIMEOUT_S = 15
"""Seconds without heartbeats after which JAX takes a process for dead and ends
the others (heartbeats come from a thread of JAX's own, so a busy process still
sends them)."""
EXIT_GRACE_S = 5.0
"""How long a process told to stop waits at JAX's shutdown barrier for process
0 before it leaves without it (process 0 then waits for its heartbeats to time
out, :data:`HEARTBEAT_TIMEOUT_S`)."""
_STOP_KEY = "vmaptune/stop/{}"  # Per process: "failed:<why>" from process 0, or "done" at exit.
_FAILED, _DONE = "failed:", "done"
_WAIT_MS = 60_000  # One wait of the watchdog; a timed-out wait just starts the next.
_MESSAGE_CHARS = 2000



class _Watch:
  """This process's side of :func:`abort_others` (one per process: module state)."""

  client: Any = None  # The JAX coordination client watched (None: not yet).
  thread: threading.Thread | None = None  # The watchdog, on processes other than 0.
  aborted = False  # Process 0 told the others to stop.
  disarmed = False  # A normal end: the watchdog's wait ending means nothing.
  stopping = False  # The watchdog is ending this process.
  excepthook: Any = None  # The hook ours wraps.


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
  """Tells every other process that process 0 failed, and why: they stop at once.

  Call it on process 0 where a failure ends the run (it is called for an
  uncaught exception), just before process 0 stops: the others wait for it at
  JAX's shutdown barrier for :data:`EXIT_GRACE_S`, and once they are gone JAX
  ends process 0 itself within :data:`HEARTBEAT_TIMEOUT_S` if it is still
  running. Elsewhere, in a single process, and on every call after the first,
  it does nothing; it never raises.

  Args:
    message: why process 0 stops; the others print it on one line.
  """
  try:
    found = _coordination()
    if found is None or found[1] != 0 or _watch.aborted:
      return
    client, _, count = found
    _watch.aborted = True
    text = " ".join(str(message).split())[:_MESSAGE_CHARS] or "(no message)"
    for index in range(1, count):
      with contextlib.suppress(Exception):  # Tell the rest even if one cannot be told.
        client.key_value_set(_STOP_KEY.format(index), _FAILED + text, allow_overwrite=True)
  except Exception:  # On a failure path: the failure itself is what must be reported.
    pass


def watch_process_0() -> None:
  """Once joined: on process 0, uncaught exceptions reach the others; on the
  others, a watchdog waits for process 0's word (:func:`abort_others`)."""
  found = _coordination()
  if found is None or _watch.client is found[0]:
    return
  client, index, _ = found
  _watch.client = client
  if _watch.excepthook is None:
    _watch.excepthook, sys.excepthook = sys.excepthook, _excepthook
  if index == 0:
    return
  _watch.thread = threading.Thread(target=_wait_for_process_0, args=(client, index),
                                   name="vmaptune-watchdog", daemon=True)
  # atexit runs hooks last-registered first: this one before JAX's (registered when
  # jax was imported), which shuts the client down under the watchdog's wait.
  atexit.register(_disarm, index)
  _watch.thread.start()


def _excepthook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
  if _watch.stopping:
    return  # The watchdog is ending this process and said why; this error follows from it.
  found = _coordination()
  if found is not None and found[1] == 0 and not hasattr(sys, "ps1"):  # Not interactive.
    abort_others(f"{kind.__name__}: {error}" if str(error) else kind.__name__)
  _watch.excepthook(kind, error, traceback)


def _wait_for_process_0(client: Any, index: int) -> None:
  """The watchdog (processes other than 0): waits for process 0's word, then
  ends this process, whatever its main thread is waiting for."""
  while True:
    try:
      value = client.blocking_key_value_get(_STOP_KEY.format(index), _WAIT_MS)
    except Exception as error:  # JAX's runtime error; its text names the status.
      text = str(error)
      if _watch.disarmed or "CANCELLED" in text:
        return  # This process's client was shut down: a normal end.
      if "DEADLINE_EXCEEDED" in text:
        continue
      reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
      _stop(index, f"lost process 0 (the coordinator): {reason}", None)
      return
    if _watch.disarmed or not value.startswith(_FAILED):
      return
    _stop(index, f"process 0 failed: {value[len(_FAILED):]}", client)
    return


def _stop(index: int, reason: str, client: Any) -> None:
  """Ends this process at once (its main thread may be stuck in a collective)."""
  _watch.stopping = True
  print(f"vmaptune: {reason}; process {index} stops", file=sys.stderr, flush=True)
  if client is not None:
    # Meet process 0 at JAX's shutdown barrier, which it reaches as it exits: else it
    # waits there until this process's heartbeats time out, then JAX aborts it.
    leaving = threading.Thread(target=client.shutdown, daemon=True)
    leaving.start()
    leaving.join(EXIT_GRACE_S)
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
  with contextlib.suppress(Exception):  # Wakes the watchdog's wait.
    _watch.client.key_value_set(_STOP_KEY.format(index), _DONE, allow_overwrite=True)
  thread.join(5)
