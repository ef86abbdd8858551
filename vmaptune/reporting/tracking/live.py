"""Trackers told a run as it goes: ``tune(..., loggers=[...])``.

The same three steps as an export (:mod:`vmaptune.reporting.tracking.base`): the
config when the run starts, each round as it completes (a resumed run's
restored rounds first: trackers record them once), and the summary when the
search ends and again after the final fit. The trackers are told on a thread
of their own, in order, so that the next round trains while a store writes
the last one's trials; the summary waits until they are all written. Only
process 0 of a run over several processes logs.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from vmaptune.lanes.distributed import is_first_process
from vmaptune.reporting.tracking.base import Tracker, run_files
from vmaptune.rundir import load_run
from vmaptune.rundir.files import as_json
from vmaptune.search.observer import Observer
from vmaptune.search.results import RoundResult, TuneResult


class LiveLogging(Observer):
  """Tells ``trackers`` about one run, on a thread of their own.

  The config is told at once, in the caller's thread, so that a store that
  cannot be reached is refused before anything trains. A tracker that fails
  later is dropped with a warning (the run goes on; its directory holds
  everything, to export later).

  Args:
    trackers: where to send it.
    config: the run's config (``config.json``'s content, see
      :func:`vmaptune.rundir.snapshot`).
    out: the run directory (``None``: the run has none).
  """

  def __init__(self, trackers: Sequence[Tracker], config: Mapping[str, Any],
               out: str | None = None):
    self.trackers = list(trackers) if is_first_process() else []
    self.out = out
    self._queue: queue.Queue = queue.Queue()
    self._failed: set[int] = set()  # Trackers dropped, by position.
    self._thread: threading.Thread | None = None
    key = None if out is None else os.path.abspath(out)
    for tracker in self.trackers:
      tracker.start(as_json(config), key=key)

  def _work(self) -> None:
    while True:
      item = self._queue.get()
      try:
        if item is None:
          return
        step, args = item
        if isinstance(step, threading.Event):
          step.set()
          continue
        for position, tracker in enumerate(self.trackers):
          if position in self._failed:
            continue
          try:
            getattr(tracker, step)(*args)
          except Exception as e:  # The run goes on: its directory holds everything.
            self._failed.add(position)
            warnings.warn(f"logging to {tracker.name} stopped: {type(e).__name__}: {e}; the "
                          "run goes on, and `vmaptune export RUN_DIR --to "
                          f"{tracker.name}` sends it later", RuntimeWarning, stacklevel=2)
      finally:
        self._queue.task_done()

  def _send(self, step: str, *args: Any) -> None:
    if not self.trackers:
      return
    if self._thread is None or not self._thread.is_alive():
      self._thread = threading.Thread(target=self._work, name="vmaptune-trackers", daemon=True)
      self._thread.start()
    self._queue.put((step, args))

  def _drain(self, timeout_s: float | None = None) -> bool:
    """Waits until everything told is written (at most ``timeout_s``), then ends the thread."""
    if self._thread is None or not self._thread.is_alive():
      return True
    done = threading.Event()
    self._queue.put((done, ()))
    written = done.wait(timeout_s)
    self._queue.put(None)
    return written

  def log_round(self, result: Any) -> None:
    """A completed round (a :class:`vmaptune.search.results.RoundResult`)."""
    self._send("log_round", as_json(result.summary()),
               as_json([trial.to_record() for trial in result.trials()]))

  def restored(self, rounds: Sequence[Any]) -> None:
    for result in rounds:
      self.log_round(result)

  def finish(self, result: Any) -> None:
    """The summary so far (the run directory's, which points to the saved
    parameters, when there is one) and the files to attach; waits for it."""
    if not self.trackers:
      return
    files: dict[str, str] = {}
    summary = as_json(result.summary())
    if self.out is not None:
      run = load_run(self.out)
      summary, files = run.summary or summary, run_files(run)
    self._send("finish", summary, files)
    self._send("close")
    self._drain()

  def stop(self, error: BaseException) -> None:
    """The run raised: what was told is written (a minute at most), and the
    trackers are told it stopped (``KILLED`` for Ctrl-C, else ``FAILED``)."""
    if not self.trackers:
      return
    self._send("stop", "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
    self._send("close")
    self._drain(timeout_s=60)

  # The observer protocol (vmaptune.search.observer.Observer).
  def round_end(self, result: RoundResult) -> None:
    self.log_round(result)

  def run_end(self, result: TuneResult) -> None:
    self.finish(result)

  def final_fit(self, result: TuneResult) -> None:
    self.finish(result)

  def stopped(self, error: BaseException) -> None:
    self.stop(error)
