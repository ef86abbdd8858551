"""Opening a run directory: a new run, or a run to resume (see :mod:`vmaptune.rundir`).

Process 0 takes the writer lock, removes what a killed writer left (temporary
files, a parameter file no summary points to), and either creates the
directory or checks the stored run against the config: a different config,
a damaged file or too few rounds is refused before anything is changed, and
with ``resume_from_intact`` a damaged run is cut back to its intact rounds
(the damaged files copied aside first). The completed state goes to every
process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

from vmaptune.errors import RunDirectoryError, RunDirectoryWriteError
from vmaptune.lanes.distributed import is_first_process, on_first_process, share_from_first_process
from vmaptune.rundir.damage import (
  Inspection,
  damage_error,
  inspect_run,
  read_config,
  read_params,
)
from vmaptune.rundir.files import (
  CONFIG_FILE,
  LOCK_FILE,
  SUMMARY_FILE,
  TEMPORARY,
  TRIALS_FILE,
  differences,
  refuse_links,
  remove_stale_temporaries,
  write_atomic,
  write_json,
)
from vmaptune.rundir.lock import WriterLock
from vmaptune.rundir.writer import RunDirectory, keep_rounds


@dataclasses.dataclass(frozen=True)
class Restored:
  """What a resumed run starts from (the same on every process).

  Attributes:
    summary: ``summary.json``; its ``rounds`` are the completed rounds.
    records: the completed rounds' records, in file order.
    params: ``best_params.msgpack``'s bytes when the summary points to them.
    config: the ``config.json`` to write once the rounds are restored (``None``
      when the stored one is the same: only ``rounds``, the environment or the
      format may differ).
    repaired: where ``resume_from_intact`` moved damaged files (``None``: nothing was).
  """

  summary: dict[str, Any]
  records: list[dict[str, Any]]
  params: bytes | None
  config: dict[str, Any] | None = None
  repaired: str | None = None

  def round_records(self, index: int) -> list[dict[str, Any]]:
    return [r for r in self.records if r["round"] == index]


RUN_FILES = (CONFIG_FILE, TRIALS_FILE, SUMMARY_FILE)  # Any of them: the directory holds a run.
SHOWN_ENTRIES = 5  # Of a folder refused as a new run directory.


def _refuse_other_files(path: str) -> None:
  """Refuses a directory that holds no run but other files: a new run would
  overwrite and remove some of them (its config copy, temporary files). An
  empty directory, or one a writer left before its first write (the lock and
  its temporary files), is a new run's."""
  if not os.path.isdir(path) or any(os.path.lexists(os.path.join(path, name))
                                    for name in RUN_FILES):
    return
  others = sorted(name for name in os.listdir(path)
                  if name != LOCK_FILE and not TEMPORARY.fullmatch(name))
  if others:
    shown = ", ".join(others[:SHOWN_ENTRIES]) + (
        f" and {len(others) - SHOWN_ENTRIES} more" if len(others) > SHOWN_ENTRIES else "")
    raise RunDirectoryError(
        f"{os.path.abspath(path)} is not empty and holds no run (it holds {shown}): a new "
        "run there could overwrite or remove its files, so nothing was run and nothing in "
        "it changed. "
        "Choose a new or empty --out / out directory (or leave --out out: vmaptune run "
        "then makes runs/<name>/<time>)")


def _new_run(path: str, config: dict[str, Any], copy_files: Mapping[str, str]) -> None:
  write_json(os.path.join(path, CONFIG_FILE), config)
  for name, source in copy_files.items():
    target = os.path.join(path, name)
    if not (os.path.exists(target) and os.path.samefile(source, target)):
      with open(source, "rb") as f:
        write_atomic(target, f.read())


def _resume(path: str, config: dict[str, Any], stored: dict[str, Any],
            resume_from_intact: bool) -> dict[str, Any]:
  """Checks and trims an existing run of ``config``; returns its completed state."""
  changed = differences(stored, config)
  if changed:
    raise RunDirectoryError(f"{path} already holds a run of a different config, which is "
                            f"neither resumed nor overwritten; it differs in "
                            f"{'; '.join(changed)}. Choose another --out / out directory, "
                            "or run the same config to resume it")
  inspection: Inspection = inspect_run(path, stored, resuming=True)
  repaired = None
  if inspection.damage is not None:
    if not resume_from_intact:
      raise damage_error(inspection)
    repaired = keep_rounds(path, inspection.summary, inspection.intact)
    warnings.warn(f"{inspection.damage.what}; resuming {path} from its {inspection.intact} "
                  f"intact rounds; the damaged files were copied to {repaired}",
                  RuntimeWarning, stacklevel=5)
    inspection = inspect_run(path, stored, resuming=True)
  summary, completed = inspection.summary, inspection.intact
  rounds = config["settings"]["rounds"]
  if rounds < completed:
    raise RunDirectoryError(f"{path} already holds {completed} completed rounds; "
                            f"rounds={rounds} cannot resume it (expected rounds >= {completed})")
  _warn_if_moved(path, stored["environment"], config["environment"])
  params, _ = read_params(path, summary)
  # Only `rounds`, the format or the environment may differ: written once restored. What a
  # killed writer left past the records is tidied once they replay (RunDirectory.tidy).
  return {"summary": summary, "records": inspection.records, "params": params,
          "config": None if stored == config else config, "repaired": repaired,
          "end": inspection.end}


def _open_on_first_process(path: str, config: dict[str, Any], resume: bool,
                           resume_from_intact: bool,
                           copy_files: Mapping[str, str]) -> tuple[WriterLock, dict | None]:
  """Takes the writer lock, then creates the run directory, or checks and
  trims an existing run; returns the lock and the completed state of a
  resumed run (``None`` for a new one)."""
  lock = None
  try:
    _refuse_other_files(path)  # Before the lock file is made in it.
    lock = WriterLock(path)
    held = [name for name in RUN_FILES if os.path.lexists(os.path.join(path, name))]
    if not held:
      remove_stale_temporaries(path)  # Left by a writer killed before its first write.
      _new_run(path, config, copy_files)
      return lock, None
    if not resume:
      raise RunDirectoryError(f"{path} already holds a run ({', '.join(held)}); choose "
                              "another --out / out directory so its records are not "
                              "overwritten, or resume it with the same config")
    refuse_links(path, (TRIALS_FILE,))  # Appended in place, and cut back on resuming.
    stored = read_config(path, resuming=True)
    if stored is None:
      raise RunDirectoryError(f"{path} already holds a run but no {CONFIG_FILE}, so it "
                              "cannot be checked for resuming; choose another --out / out "
                              "directory")
    return lock, _resume(path, config, stored, resume_from_intact)
  except BaseException as e:
    if lock is not None:
      lock.release()
    if isinstance(e, OSError) and not isinstance(e, RunDirectoryError | RunDirectoryWriteError):
      raise RunDirectoryWriteError(f"cannot write the run directory {path}: "
                                   f"{e.strerror or e}; nothing was run. Choose a writable "
                                   "--out / out directory (or free space) and run again") from e
    raise


def _warn_if_moved(path: str, stored: Mapping[str, Any], current: Mapping[str, Any]) -> None:
  if (len(stored["devices"]), stored["processes"]) != (len(current["devices"]),
                                                      current["processes"]):
    warnings.warn(f"resuming {path} on {len(current['devices'])} devices in "
                  f"{current['processes']} processes; it ran on {len(stored['devices'])} in "
                  f"{stored['processes']}: later rounds equal an uninterrupted run only up to "
                  "float rounding", RuntimeWarning, stacklevel=6)


def open_run(path: str | os.PathLike, config: dict[str, Any], *, resume: bool = True,
             resume_from_intact: bool = False,
             copy_files: Mapping[str, str] | None = None) -> tuple[RunDirectory, Restored | None]:
  """Opens a run directory for a run of ``config`` (every process calls it).

  Process 0 takes the directory's writer lock first, and holds it until the
  run ends (:meth:`RunDirectory.release`). A missing or empty directory is
  created with ``config.json`` and the ``copy_files`` (``{name in the
  directory: source path}``); a directory that holds other files but no run
  is refused. A directory that holds a run of the same config is resumed
  (with ``resume``): records past its last completed round are cut off, and
  its completed state is returned.

  Args:
    resume_from_intact: when a file is damaged, resume from the leading rounds
      whose records and summary agree, copying the damaged files into
      ``damaged/<time>/`` first, instead of refusing the directory.

  Returns:
    The :class:`RunDirectory` to write to, and the :class:`Restored` state
    (``None`` for a new run).

  Raises:
    RunDirectoryBusyError: another process writes the directory (the message
      names it).
    RunDirectoryError: the directory holds a run of a different config (the
      message names each difference), more completed rounds than ``rounds``,
      or any run when ``resume`` is false; it holds other files but no run
      (the message names some); a file changed in place (``.lock``,
      ``trials.jsonl``) is a link.
    DamagedRunError: a file is unreadable or disagrees with the others (without
      ``resume_from_intact``).
    RunDirectoryWriteError: the directory cannot be written.
    Each leaves the directory as it was, and is raised on every process.
  """
  path = os.fspath(path)
  opened = on_first_process(lambda: _open_on_first_process(
      path, config, resume, resume_from_intact, dict(copy_files or {})))
  first = is_first_process()
  lock, state = opened if first else (None, None)
  params = None if state is None else state.pop("params")
  end = None if state is None else state.pop("end")
  state = json.loads(share_from_first_process(json.dumps(state).encode() if first else None))
  committed = 0
  if state is not None:
    params = share_from_first_process(params if first else None) or None
    state = Restored(state["summary"], state["records"], params, state["config"],
                     state["repaired"])
    committed = len(state.summary["rounds"])
  return RunDirectory(path, lock, committed, records_end=end), state
