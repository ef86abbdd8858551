"""Writing a run directory (see :mod:`vmaptune.rundir`; :mod:`vmaptune.rundir.opening` opens one).

The writer holds the directory's lock (:class:`~vmaptune.rundir.lock.WriterLock`)
from :func:`open_run` to the end of the run. A round is committed in one
step (:meth:`RunDirectory.commit_round`): its records appended and forced to
disk, then the best parameters so far, then the summary that lists the
round, replaced atomically; Ctrl-C waits until the commit is on disk. A write
that fails (a full disk, a read-only directory) raises
:class:`~vmaptune.errors.RunDirectoryWriteError` naming the file, with every
earlier round still on disk and a torn append cut back.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import flax.serialization
import jax

from vmaptune.errors import RunDirectoryError, RunDirectoryWriteError, VmaptuneError
from vmaptune.lanes import distributed
from vmaptune.lanes.distributed import is_first_process
from vmaptune.rundir.damage import digest, read_params, settle_params
from vmaptune.rundir.files import (
  CONFIG_FILE,
  DAMAGED_DIR,
  PARAMS_FILE,
  PENDING_PARAMS_FILE,
  SUMMARY_FILE,
  TRIALS_FILE,
  copy_durably,
  json_bytes,
  open_in_place,
  remove_stale_temporaries,
  sync_directory,
  truncate_in_place,
  write_atomic,
  write_json,
)
from vmaptune.rundir.lock import WriterLock
from vmaptune.trials.table import Trial


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
  """Holds Ctrl-C (SIGINT) back until the block ends, then raises
  ``KeyboardInterrupt``: what the block writes is written whole. Only in the
  main thread, and only over Python's own SIGINT handler."""
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
    yield
    return
  received = []
  signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)
  if received:
    raise KeyboardInterrupt


class RunDirectory:
  """Writes a run's records (process 0 only: elsewhere it keeps the path and
  writes nothing). Opened by :func:`open_run`, which takes the writer lock.

  Attributes:
    path: the directory.
    writes: whether this process writes (process 0).
    committed: the rounds on disk (listed by ``summary.json``).
  """

  def __init__(self, path: str | os.PathLike, lock: WriterLock | None = None,
               committed: int = 0, records_end: int | None = None):
    self.path = os.fspath(path)
    self.writes = is_first_process()
    self.lock = lock
    self.committed = committed
    self.records_end = records_end  # Where a resumed run's checked records end.
    self.summary_digest = self._digest()  # Of the summary this run last read or wrote.

  def _digest(self) -> str | None:
    if not self.writes or not os.path.exists(self.file(SUMMARY_FILE)):
      return None
    with open(self.file(SUMMARY_FILE), "rb") as f:
      return digest(f.read())

  def tidy(self) -> None:
    """Once a resumed run's records replayed: removes what a killed writer left
    (records of the round in progress, temporary files, new parameters no
    summary points to). Before that, a refused directory is left untouched."""
    if not self.writes:
      return
    trials = self.file(TRIALS_FILE)
    with self._writing(TRIALS_FILE):
      if self.records_end is not None and os.path.exists(trials) and \
          os.path.getsize(trials) > self.records_end:
        # The round in progress when the run stopped.
        truncate_in_place(trials, self.records_end)
      remove_stale_temporaries(self.path)
      settle_params(self.path)
    self.records_end = None

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  @contextlib.contextmanager
  def _writing(self, name: str, undo: Any = None) -> Iterator[None]:
    """Turns a failed write of file ``name`` into a :class:`RunDirectoryWriteError`
    (after ``undo()``), and tells the other processes of a run that process 0 stopped.
    A file refused as a link (a :class:`RunDirectoryError`) is raised as it is."""
    try:
      yield
    except VmaptuneError as e:
      distributed.abort_others(str(e))
      raise
    except OSError as e:
      if undo is not None:
        with contextlib.suppress(OSError):
          undo()
      on_disk = (f"rounds 1-{self.committed} are on disk" if self.committed
                 else "no round had completed")
      message = (f"could not write {self.file(name)}: {e.strerror or e} (errno {e.errno}). The "
                 f"run stopped; {on_disk}, and running the same command again resumes "
                 "after them once the directory can be written (free space, or make it "
                 "writable)")
      distributed.abort_others(message)
      raise RunDirectoryWriteError(message) from e

  def commit_round(self, trials: Sequence[Trial], summary: dict[str, Any],
                   params: Any = None) -> str | None:
    """Commits a round: its ``trials``' records, the best parameters so far when
    they changed (``params``, a pytree, with the summary's ``best_params``
    pointing to them), then ``summary``.

    Returns:
      The SHA-256 of the parameters written (``None``: none were).
    """
    if not self.writes:
      return None
    with interrupts_deferred():
      self.append_round(trials)
      return self._write_with_params(summary, params)

  def append_round(self, trials: Sequence[Trial]) -> None:
    """Appends one line per trial and forces it to disk (part of
    :meth:`commit_round`); a failed append is cut back."""
    if not self.writes:
      return
    path = self.file(TRIALS_FILE)
    size = os.path.getsize(path) if os.path.exists(path) else 0
    data = "".join(json.dumps(t.to_record()) + "\n" for t in trials).encode()
    with self._writing(TRIALS_FILE, undo=lambda: truncate_in_place(path, size)):
      # In place, so never through a link (a copy made with cp -al, a planted link).
      fd = open_in_place(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
      with os.fdopen(fd, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())

  def _write_summary(self, summary: dict[str, Any]) -> None:
    data = json_bytes(summary)
    with self._writing(SUMMARY_FILE):
      write_atomic(self.file(SUMMARY_FILE), data)
    self.committed = len(summary.get("rounds", []))
    self.summary_digest = digest(data)

  def _write_with_params(self, summary: dict[str, Any], params: Any) -> str | None:
    """Writes ``summary``, and before it new ``params`` that its ``best_params``
    then points to (with their SHA-256, returned). The new file keeps a name of
    its own until the summary is written, so at every moment one file matches
    the summary's digest."""
    if params is None:
      self._write_summary(summary)
      return None
    data = flax.serialization.to_bytes(jax.device_get(params))
    with self._writing(PARAMS_FILE):
      write_atomic(self.file(PENDING_PARAMS_FILE), data)
    sha256 = digest(data)
    summary["best_params"]["sha256"] = sha256
    self._write_summary(summary)
    with self._writing(PARAMS_FILE):
      os.replace(self.file(PENDING_PARAMS_FILE), self.file(PARAMS_FILE))
      sync_directory(self.path)
    return sha256

  def write_summary(self, summary: dict[str, Any]) -> None:
    """Writes ``summary.json`` atomically (a crash leaves the old one intact)."""
    if self.writes:
      with interrupts_deferred():
        self._write_summary(summary)

  def write_config(self, config: dict[str, Any] | None) -> None:
    """Rewrites ``config.json`` (a resumed run's, when ``rounds``, the environment or
    the format changed; ``None``: nothing to write)."""
    if self.writes and config is not None:
      with self._writing(CONFIG_FILE):
        write_json(self.file(CONFIG_FILE), config)

  def write_final(self, params: Any, summary: dict[str, Any]) -> str | None:
    """Saves the final fit: its parameters, then the summary pointing to them.
    Takes the writer lock again if the run released it (``tune`` returned).

    Returns:
      The parameters' SHA-256 (``None`` on a process that does not write).

    Raises:
      RunDirectoryBusyError: another process writes the directory now.
    """
    if not self.writes:
      return None
    with self.locked(), interrupts_deferred():
      return self._write_with_params(summary, params)

  @contextlib.contextmanager
  def locked(self) -> Iterator[None]:
    """The writer lock, held for the block (taken again if it was released)."""
    if self.lock is not None and self.lock.held:
      yield
      return
    self.lock = WriterLock(self.path)
    try:
      yield
    finally:
      self.lock.release()

  @contextlib.contextmanager
  def final_fit_guard(self) -> Iterator[None]:
    """Holds the writer lock over a final fit (trained, then saved), after
    checking that the directory still holds the search it fits: another run
    may have resumed or extended it since this one's search ended.

    Raises:
      RunDirectoryBusyError: another process writes the directory now.
      RunDirectoryError: the directory changed since the search ended.
    """
    if not self.writes:
      yield
      return
    with self.locked():
      if self._digest() != self.summary_digest:
        raise RunDirectoryError(
            f"{self.path} changed since this search ended (another run resumed or extended "
            "it), so this result's final fit would overwrite that run's records; nothing "
            "was trained. Run the same config into it again: it resumes the directory as it "
            "is now, and fits from there")
      yield

  def release(self) -> None:
    """Releases the writer lock (the run ended)."""
    if self.lock is not None:
      self.lock.release()

  def keep_rounds(self, summary: dict[str, Any], count: int) -> str | None:
    """Cuts the run back to its first ``count`` rounds, first copying the files
    it changes into ``damaged/<time>/`` (never deleting anything). Returns
    that directory (``None`` on processes other than 0)."""
    if not self.writes:
      return None
    return keep_rounds(self.path, summary, count)


def _aside(path: str) -> str:
  stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
  base = os.path.join(path, DAMAGED_DIR, stamp)
  target, copy = base, 1
  while os.path.exists(target):
    copy += 1
    target = f"{base}-{copy}"
  os.makedirs(target)
  return target


def kept_params(path: str, summary: dict[str, Any], count: int) -> dict[str, Any] | None:
  """The summary's ``best_params`` pointer if it stays valid when the run is cut
  back to ``count`` rounds: the search's parameters of one of those rounds, on
  disk as the summary says. ``None`` otherwise."""
  pointer = summary.get("best_params")
  if not isinstance(pointer, dict) or pointer.get("from") != "search" or \
      not isinstance(pointer.get("round"), int) or pointer["round"] >= count:
    return None
  return pointer if read_params(path, summary)[0] is not None else None


def keep_rounds(path: str, summary: dict[str, Any], count: int) -> str:
  """Copies the summary and records aside, then rewrites them with the first
  ``count`` rounds only (each atomically); parameters of a round cut off (or
  damaged) are moved aside too. The copies, and the folders that name them,
  are forced to disk before anything is rewritten: after a power cut at any
  moment, what was damaged is still on disk, aside or in place."""
  aside = _aside(path)
  for name in (SUMMARY_FILE, TRIALS_FILE):
    if os.path.exists(os.path.join(path, name)):
      copy_durably(os.path.join(path, name), os.path.join(aside, name))
  pointer = kept_params(path, summary, count)
  if pointer is None:  # The next round that improves on the best writes them again.
    for name in (PARAMS_FILE, PENDING_PARAMS_FILE):
      if os.path.exists(os.path.join(path, name)):
        os.replace(os.path.join(path, name), os.path.join(aside, name))
  for folder in (aside, os.path.dirname(aside), path):  # damaged/<time>, damaged, the run.
    sync_directory(folder)
  rounds = summary["rounds"][:count]
  records = sum(entry["trials"] for entry in rounds)
  trials = os.path.join(path, TRIALS_FILE)
  kept = b""
  if os.path.exists(trials):
    with open(trials, "rb") as f:
      kept = b"".join(line for _, line in zip(range(records), f, strict=False))
  write_atomic(trials, kept)
  kept = {"rounds": rounds, "wall_s": sum(entry["wall_s"] for entry in rounds),
          "best_params": pointer}
  if count == len(summary["rounds"]) and summary.get("confirmation"):
    kept["confirmation"] = summary["confirmation"]  # Checked again when it is restored.
  write_json(os.path.join(path, SUMMARY_FILE), kept)
  return aside
