"""Writing a run directory, and opening one to resume it (see :mod:`vmaptune.rundir`)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

import flax.serialization
import jax

from vmaptune.distributed import is_first_process, on_first_process, share_from_first_process
from vmaptune.rundir.files import (
  CONFIG_FILE,
  PARAMS_FILE,
  SUMMARY_FILE,
  TRIALS_FILE,
  differences,
  read_json,
  read_records,
  write_atomic,
  write_json,
)


class RunDirectory:
  """Writes a run's records (process 0 only: elsewhere it keeps the path and
  writes nothing). Opened by :func:`open_run`."""

  def __init__(self, path: str | os.PathLike):
    self.path = os.fspath(path)
    self.writes = is_first_process()

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  def append_round(self, result: Any) -> None:
    """Appends one line per trial of a :class:`vmaptune.results.RoundResult`
    and forces it to disk."""
    if not self.writes:
      return
    with open(self.file(TRIALS_FILE), "a") as f:
      for trial in result.trials():
        f.write(json.dumps(trial.to_record()) + "\n")
      f.flush()
      os.fsync(f.fileno())

  def write_summary(self, summary: dict[str, Any]) -> None:
    """Writes ``summary.json`` atomically (a crash leaves the old one intact)."""
    if self.writes:
      write_json(self.file(SUMMARY_FILE), summary)

  def write_config(self, config: dict[str, Any] | None) -> None:
    """Rewrites ``config.json`` (a resumed run's, when ``rounds``, the environment or
    the format changed; ``None``: nothing to write)."""
    if self.writes and config is not None:
      write_json(self.file(CONFIG_FILE), config)

  def write_params(self, params: Any) -> None:
    """Writes a parameter pytree (no lane axis) as ``flax.serialization`` msgpack."""
    if self.writes:
      write_atomic(self.file(PARAMS_FILE), flax.serialization.to_bytes(jax.device_get(params)))


@dataclasses.dataclass(frozen=True)
class Restored:
  """What a resumed run starts from (the same on every process).

  Attributes:
    summary: ``summary.json``; its ``rounds`` are the completed rounds.
    records: the completed rounds' records, in file order.
    params: ``best_params.msgpack``'s bytes when the summary holds a final fit.
    config: the ``config.json`` to write once the rounds are restored (``None``
      when the stored one is the same: only ``rounds``, the environment or the
      format may differ).
  """

  summary: dict[str, Any]
  records: list[dict[str, Any]]
  params: bytes | None
  config: dict[str, Any] | None = None

  def round_records(self, index: int) -> list[dict[str, Any]]:
    return [r for r in self.records if r["round"] == index]


def _open_on_first_process(path: str, config: dict[str, Any], resume: bool,
                           copy_files: Mapping[str, str]) -> dict[str, Any] | None:
  """Creates the run directory, or checks and trims an existing run; returns
  the completed state of a resumed run (``None`` for a new one)."""
  files = {name: os.path.join(path, name) for name in (CONFIG_FILE, TRIALS_FILE, SUMMARY_FILE)}
  held = [name for name, file in files.items() if os.path.exists(file)]
  if not held:
    os.makedirs(path, exist_ok=True)
    write_json(files[CONFIG_FILE], config)
    for name, source in copy_files.items():
      target = os.path.join(path, name)
      if not (os.path.exists(target) and os.path.samefile(source, target)):
        shutil.copyfile(source, target)
    return None
  if not resume:
    raise FileExistsError(f"{path} already holds a run ({', '.join(held)}); choose another "
                          "--out / out directory so its records are not overwritten, or "
                          "resume it with the same config")
  if CONFIG_FILE not in held:
    raise FileExistsError(f"{path} already holds a run but no {CONFIG_FILE} (an earlier "
                          "vmaptune wrote it), so it cannot be checked for resuming; choose "
                          "another --out / out directory")
  stored = read_json(files[CONFIG_FILE])
  changed = differences(stored, config)
  if changed:
    raise FileExistsError(f"{path} already holds a run of a different config, which is "
                          f"neither resumed nor overwritten; it differs in "
                          f"{'; '.join(changed)}. Choose another --out / out directory, or "
                          "run the same config to resume it")
  summary = read_json(files[SUMMARY_FILE]) if SUMMARY_FILE in held else {"rounds": []}
  completed = len(summary["rounds"])
  rounds = config["settings"]["rounds"]
  if rounds < completed:
    raise FileExistsError(f"{path} already holds {completed} completed rounds; rounds={rounds} "
                          f"cannot resume it (expected rounds >= {completed})")
  records, end = read_records(files[TRIALS_FILE], completed)
  counts = [sum(r["round"] == i for r in records) for i in range(completed)]
  if counts != [r["trials"] for r in summary["rounds"]]:
    raise FileExistsError(f"{path}: {TRIALS_FILE} holds {counts} trials for the completed "
                          f"rounds but {SUMMARY_FILE} lists "
                          f"{[r['trials'] for r in summary['rounds']]}; the records are "
                          "damaged, so the run cannot be resumed")
  if os.path.exists(files[TRIALS_FILE]) and os.path.getsize(files[TRIALS_FILE]) > end:
    os.truncate(files[TRIALS_FILE], end)  # The round in progress when the run stopped.
  _warn_if_moved(path, stored["environment"], config["environment"])
  params_path = os.path.join(path, PARAMS_FILE)
  params = None
  if summary.get("final_fit") and os.path.exists(params_path):
    with open(params_path, "rb") as f:
      params = f.read()
  # Only `rounds`, the format or the environment may differ: written once restored.
  return {"summary": summary, "records": records, "params": params,
          "config": None if stored == config else config}


def _warn_if_moved(path: str, stored: Mapping[str, Any], current: Mapping[str, Any]) -> None:
  if (len(stored["devices"]), stored["processes"]) != (len(current["devices"]),
                                                      current["processes"]):
    warnings.warn(f"resuming {path} on {len(current['devices'])} devices in "
                  f"{current['processes']} processes; it ran on {len(stored['devices'])} in "
                  f"{stored['processes']}: later rounds equal an uninterrupted run only up to "
                  "float rounding", RuntimeWarning, stacklevel=5)


def open_run(path: str | os.PathLike, config: dict[str, Any], *, resume: bool = True,
             copy_files: Mapping[str, str] | None = None) -> tuple[RunDirectory, Restored | None]:
  """Opens a run directory for a run of ``config`` (every process calls it).

  A missing or empty directory is created with ``config.json`` and the
  ``copy_files`` (``{name in the directory: source path}``). A directory that
  holds a run of the same config is resumed (with ``resume``): records past
  its last completed round are cut off, and its completed state is returned.

  Returns:
    The :class:`RunDirectory` to write to, and the :class:`Restored` state
    (``None`` for a new run).

  Raises:
    FileExistsError: the directory holds a run of a different config (the
      message names each difference), damaged records, more completed rounds
      than ``rounds``, or any run when ``resume`` is false; nothing was
      changed. Raised on every process.
  """
  path = os.fspath(path)
  state = on_first_process(lambda: _open_on_first_process(path, config, resume,
                                                          dict(copy_files or {})))
  first = is_first_process()
  params = None if state is None else state.pop("params")
  state = json.loads(share_from_first_process(json.dumps(state).encode() if first else None))
  if state is not None:
    params = share_from_first_process(params if first else None) or None
    state = Restored(state["summary"], state["records"], params, state["config"])
  return RunDirectory(path), state
