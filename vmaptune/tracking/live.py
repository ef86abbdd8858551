"""Trackers told a run as it goes: ``tune(..., loggers=[...])``.

The same three steps as an export (:mod:`vmaptune.tracking.base`): the
config when the run starts, each round as it completes (a resumed run's
restored rounds first: trackers record them once), and the summary when the
search ends and again after the final fit. The trackers are told on a thread
of their own, in order, so that the next round trains while a store writes
the last one's trials; the summary waits until they are all written. Only
process 0 of a run over several processes logs.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from vmaptune.distributed import is_first_process
from vmaptune.rundir import load_run
from vmaptune.tracking.base import Tracker, run_files


def _plain(value: Any) -> Any:
  return json.loads(json.dumps(value))


class LiveLogging:
  """Tells ``trackers`` about one run, on a thread of their own.

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
    self._failure: BaseException | None = None
    self._thread = threading.Thread(target=self._work, name="vmaptune-trackers", daemon=True)
    if self.trackers:
      self._thread.start()
    key = None if out is None else os.path.abspath(out)
    self._send("start", _plain(config), key=key)

  def _work(self) -> None:
    while True:
      step, args, kwargs = self._queue.get()
      try:
        if self._failure is None:
          for tracker in self.trackers:
            getattr(tracker, step)(*args, **kwargs)
      except BaseException as e:  # Reported by the next wait, in the caller's thread.
        self._failure = e
      finally:
        self._queue.task_done()

  def _send(self, step: str, *args: Any, **kwargs: Any) -> None:
    if self.trackers:
      self._queue.put((step, args, kwargs))

  def wait(self) -> None:
    """Returns once every tracker wrote what it was told; raises what one raised."""
    if self.trackers:
      self._queue.join()
    if self._failure is not None:
      failure, self._failure = self._failure, None
      raise failure

  def log_round(self, result: Any) -> None:
    """A completed round (a :class:`vmaptune.results.RoundResult`)."""
    self._send("log_round", _plain(result.summary()),
               _plain([trial.to_record() for trial in result.trials()]))

  def restored(self, rounds: Sequence[Any]) -> None:
    for result in rounds:
      self.log_round(result)

  def finish(self, result: Any) -> None:
    """The summary so far (the run directory's, which points to the saved
    parameters, when there is one) and the files to attach; waits for it."""
    if not self.trackers:
      return
    files: dict[str, str] = {}
    summary = _plain(result.summary())
    if self.out is not None:
      run = load_run(self.out)
      summary, files = run.summary or summary, run_files(run)
    self._send("finish", summary, files)
    self._send("close")
    self.wait()
