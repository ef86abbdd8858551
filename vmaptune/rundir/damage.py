"""Checking a run directory's files against each other: what is intact, what is damaged.

:func:`inspect_run` reads ``config.json``, ``summary.json`` and
``trials.jsonl`` and finds the leading rounds whose records and summary agree
(the *intact* rounds): the summary lists the round with well-formed fields,
and ``trials.jsonl`` holds exactly its records, numbered in order, each one
well-formed. Records past the last round the summary lists are a round in
progress (a killed run), not damage. The first disagreement is reported as a
:class:`Damage` naming the file and what is wrong; :func:`damage_error` turns
it into the one error a user sees, with what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Mapping
from typing import Any

from vmaptune.errors import DamagedRunError
from vmaptune.rundir.files import (
  CONFIG_FILE,
  DAMAGED_DIR,
  PARAMS_FILE,
  PENDING_PARAMS_FILE,
  SUMMARY_FILE,
  TRIALS_FILE,
  upgrade,
)
from vmaptune.rundir.reading import parse_json, read_json, read_lines
from vmaptune.rundir.records import Summary, TrialRecord, round_entries
from vmaptune.space.space import Space
from vmaptune.trials import fields
from vmaptune.trials.fields import RecordError
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import TrialTable

# config.json's parts and their types (its settings are checked below).
CONFIG_FIELDS: dict[str, tuple[type, ...]] = {
    "settings": (dict,), "space": (dict,), "model": (dict,), "data": (dict,),
    "environment": (dict,)}
# What reading a run back needs (resuming it needs every field above).
READ_CONFIG_FIELDS = ("settings", "space")


@dataclasses.dataclass(frozen=True)
class Damage:
  """What is wrong: the damaged ``file`` (a path) and ``what`` (a sentence)."""

  file: str
  what: str


@dataclasses.dataclass(frozen=True)
class Inspection:
  """A run directory's files, read and checked against each other.

  Attributes:
    path: the run directory.
    config: ``config.json`` as stored (``None``: there is none).
    summary: ``summary.json`` (``{"rounds": []}`` when there is none, or the
      part that is intact when it is damaged: its intact rounds).
    records: the intact rounds' records, in file order.
    end: the byte offset of ``trials.jsonl`` where those records end.
    intact: how many leading rounds are intact.
    listed: how many rounds ``summary.json`` lists (``intact`` when undamaged).
    damage: the first damage found, ``None`` when the files agree.
  """

  path: str
  config: dict[str, Any] | None
  summary: dict[str, Any]
  records: list[dict[str, Any]]
  end: int
  intact: int
  listed: int
  damage: Damage | None


def _type_problem(value: Any, fields: Mapping[str, tuple[type, ...]],
                  optional: tuple[str, ...] = ()) -> str | None:
  """What is wrong with a JSON object's fields (``optional`` ones may be absent,
  but not of another type), or ``None``."""
  if not isinstance(value, dict):
    return f"a JSON {type(value).__name__} where an object was expected"
  for key, types in fields.items():
    if key not in value:
      if key in optional:
        continue
      return f"no {key!r} field"
    item = value[key]
    if isinstance(item, bool) and bool not in types:  # JSON true is not a count.
      return f"{key!r} is {item!r}, expected {' or '.join(t.__name__ for t in types)}"
    if not isinstance(item, types):
      return f"{key!r} is {type(item).__name__}, expected {' or '.join(t.__name__ for t in types)}"
  return None


def _optional(fields: Mapping[str, tuple[type, ...]], resuming: bool,
              read: tuple[str, ...]) -> tuple[str, ...]:
  """The fields that may be absent: resuming needs them all, reading only ``read``."""
  return () if resuming else tuple(k for k in fields if k not in read)


def read_config(path: str, resuming: bool = False) -> dict[str, Any] | None:
  """``config.json`` of run directory ``path`` (``None`` when there is none).

  Args:
    resuming: check every field a resumed run compares, not only what reading
      the run back needs.

  Raises:
    DamagedRunError: it is unreadable or lacks what a run's config holds.
  """
  file = os.path.join(path, CONFIG_FILE)
  if not os.path.exists(file):
    return None
  config, problem = read_json(file)
  if problem is None:
    problem = _type_problem(config, CONFIG_FIELDS,
                            _optional(CONFIG_FIELDS, resuming, READ_CONFIG_FIELDS))
  if problem is None:
    try:
      Space.from_dict(upgrade(config)["space"])
      Scoring.from_dict(config.get("scoring"))
      rounds = config["settings"]["rounds"]
      budgeted = config["settings"].get("budget") is not None  # Then rounds may be null.
      if not (isinstance(rounds, int) and not isinstance(rounds, bool)
              or rounds is None and budgeted):
        problem = f"settings.rounds is {rounds!r}, expected a whole number"
      epochs = config["settings"]["epochs"]
      if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        problem = f"settings.epochs is {epochs!r}, expected a whole number >= 1"
    except Exception as e:  # Whatever a garbled space makes the parser raise.
      problem = f"holds no valid run config ({type(e).__name__}: {e})"
  if problem is not None:
    raise DamagedRunError(
        f"{file} {problem if problem.startswith(('is ', 'cannot')) else 'is damaged: ' + problem}"
        f". It records what the run is, so the run cannot be read or resumed without it: "
        f"restore it from a copy (the run's config file is kept beside it as config.py when "
        f"vmaptune run wrote the directory), or start again with another --out / out "
        f"directory; nothing in {path} was changed", file, 0)
  return config


def _summary_problem(summary: dict[str, Any], scoring: Scoring,
                     resuming: bool) -> tuple[int, str | None]:
  """How many leading round entries are well-formed, and what is wrong with
  the summary (its records, :mod:`vmaptune.rundir.records`, say)."""
  listed = len(round_entries(summary, scoring, resuming, leading=True))
  try:
    Summary.from_json(summary, scoring, complete=resuming)  # Every field, as readers take it.
  except RecordError as e:
    return listed, str(e)
  return listed, None


def _check_round(records: list[dict[str, Any]], index: int, space: Space,
                 epochs: int, scoring: Scoring) -> str | None:
  """What is wrong with round ``index``'s complete records, or ``None``."""
  try:
    TrialTable.from_records(records, space, epochs, scoring)
  except Exception as e:  # Values a garbled record holds (wrong names, lengths, types).
    return f"round {index + 1}'s records do not form a round ({type(e).__name__}: {e})"
  return None


def _read_summary(path: str, scoring: Scoring,
                  resuming: bool) -> tuple[dict[str, Any], int, Damage | None]:
  """``summary.json`` (``{"rounds": []}`` when missing or unreadable), how many of
  its round entries are well-formed, and its damage (``None`` if none)."""
  if not os.path.exists(path):
    return {"rounds": []}, 0, None
  value, problem = read_json(path)
  if problem is None:
    try:
      fields.obj(value)
      fields.take(value, "rounds", fields.LIST)
    except RecordError as e:
      problem = f"is damaged: {e}"
  if problem is not None:
    return {"rounds": []}, 0, Damage(path, f"{path} {problem}")
  # Its rounds can be read: damage past them leaves them intact.
  listed, problem = _summary_problem(value, scoring, resuming)
  return value, listed, None if problem is None else Damage(path, f"{path} is damaged: {problem}")


def _parse_record(line: bytes, line_number: int, scoring: Scoring,
                  expected: tuple[int, int]) -> tuple[dict[str, Any] | None, str | None]:
  """One ``trials.jsonl`` line as a record, or what is wrong with it; ``expected``
  is the ``(round, trial)`` it must hold."""
  if not line.endswith(b"\n"):
    return None, f"line {line_number} is cut short (no line end)"
  record, problem = parse_json(line)
  if problem is not None:
    return None, f"line {line_number} {problem}"
  try:
    TrialRecord.from_json(record, scoring)
  except RecordError as e:
    return None, f"line {line_number} is not a trial record: {e}"
  if (record["round"], record["trial"]) != expected:
    return None, (f"line {line_number} holds round {record['round'] + 1}'s trial "
                  f"{record['trial']} where round {expected[0] + 1}'s trial {expected[1]} "
                  "was expected (records reordered, or some missing)")
  return record, None


def _intact_rounds(path: str, rounds: list[dict[str, Any]], space: Space, epochs: int,
                   scoring: Scoring) -> tuple[list[dict[str, Any]], int, int, str | None]:
  """Reads ``trials.jsonl`` line by line up to the end of the summary's ``rounds``.

  Returns:
    The intact rounds' records, how many rounds are intact, the byte offset
    where their records end, and what is wrong with the next round's records
    (``None`` when every round listed is intact). Lines past the last listed
    round are a round in progress, not read.
  """
  records: list[dict[str, Any]] = []
  current: list[dict[str, Any]] = []
  intact = end = offset = 0
  problem = None
  if not rounds:
    return records, intact, end, problem
  with contextlib.closing(read_lines(path)) as lines:
    for line_number, (line, too_long) in enumerate(lines, 1):
      record, problem = ((None, f"line {line_number} {too_long}") if too_long else
                         _parse_record(line, line_number, scoring, (intact, len(current))))
      if problem is not None:
        break
      current.append(record)
      offset += len(line)
      if len(current) == rounds[intact]["trials"]:
        problem = _check_round(current, intact, space, epochs, scoring)
        if problem is not None:
          break
        records += current
        intact, end, current = intact + 1, offset, []
        if intact == len(rounds):
          break  # What follows is the round in progress when the run stopped.
  if intact < len(rounds):
    problem = problem or (f"it holds {len(current)} records of round {intact + 1} where "
                          f"{SUMMARY_FILE} lists {rounds[intact]['trials']} (cut short?)")
  return records, intact, end, problem


def inspect_run(path: str, config: dict[str, Any], resuming: bool = False) -> Inspection:
  """Reads a run directory and finds its intact rounds (see the module).

  Args:
    path: the run directory.
    config: its ``config.json`` (see :func:`read_config`), which gives the
      space and the epoch budget the records are checked against.
    resuming: check every field resuming reads (not only what reading the
      run back needs), and the parameters: after :func:`settle_params`, only
      damage makes them differ from the ones the summary points to.
  """
  summary_path, trials_path = (os.path.join(path, name) for name in (SUMMARY_FILE, TRIALS_FILE))
  scoring = Scoring.from_dict(config.get("scoring"))
  summary, listed, damage = _read_summary(summary_path, scoring, resuming)
  rounds = summary["rounds"][:listed]
  space = Space.from_dict(upgrade(config)["space"])
  epochs = config["settings"]["epochs"]
  records, intact, end, problem = _intact_rounds(trials_path, rounds, space, epochs, scoring)
  if problem is not None:
    damage = Damage(trials_path, f"{trials_path}: {problem}")
  if damage is None and resuming and summary.get("best_params"):
    data, problem = read_params(path, summary)
    if data is None:
      damage = Damage(os.path.join(path, PARAMS_FILE), problem)
  kept = dict(summary, rounds=rounds[:intact]) if damage is not None else summary
  return Inspection(path, config, kept, records, end, intact,
                    len(summary["rounds"]), damage)


def intact_advice(path: str, intact: int, total: Any, reading: bool = False) -> str:
  """What a damaged run still holds and what to do: the sentences after the damage."""
  kept = (f"Rounds 1-{intact} of {total} are intact (their records and summary agree)"
          if intact else "No round is intact")
  resume = "resumes from them" if intact else "starts the run over"
  return (f"{kept}. Running the same config again with --resume-from-intact (Python: "
          f"resume_from_intact=True) {resume}, moving the damaged files into "
          f"{os.path.join(path, DAMAGED_DIR)}/ (nothing is deleted)"
          + ("; until then the directory cannot be read back" if reading
             else "; nothing was changed"))


def damage_error(inspection: Inspection, reading: bool = False) -> DamagedRunError:
  """The error for ``inspection.damage``: the file, what is wrong, and what to do.

  Args:
    reading: the error stops a reader (``load_run``, ``show``, ``report``),
      not a resumed run.
  """
  total = (inspection.config or {}).get("settings", {}).get("rounds", "?")
  advice = intact_advice(inspection.path, inspection.intact, total, reading)
  return DamagedRunError(f"{inspection.damage.what}. {advice}", inspection.damage.file,
                         inspection.intact)


def digest(data: bytes) -> str:
  """SHA-256 of a file's bytes (the summary records its parameters' digest)."""
  return hashlib.sha256(data).hexdigest()


def read_params(path: str, summary: Mapping[str, Any]) -> tuple[bytes | None, str | None]:
  """The bytes of the parameters ``summary`` points to (its ``best_params.sha256``):
  ``best_params.msgpack``, or ``best_params.next.msgpack`` when the run stopped
  between writing the summary and renaming the new file; ``None`` and why when
  neither matches. A summary without a digest (format 1) points to the final
  fit's ``best_params.msgpack``."""
  pointer = summary.get("best_params")
  if pointer is None and not summary.get("final_fit"):
    return None, "no parameters were saved yet"
  files = [os.path.join(path, name) for name in (PARAMS_FILE, PENDING_PARAMS_FILE)]
  if not os.path.exists(files[0]) and not os.path.exists(files[1]):
    return None, f"{files[0]} is missing"
  for file in files:
    if not os.path.exists(file):
      continue
    with open(file, "rb") as f:
      if not isinstance(pointer, dict):
        return f.read(), None
      # Digested piece by piece: a file that is not the one pointed to is never held whole.
      if pointer.get("sha256") == hashlib.file_digest(f, "sha256").hexdigest():
        f.seek(0)
        return f.read(), None
  return None, (f"{files[0]} is not the file {SUMMARY_FILE} points to (its SHA-256 differs: "
                "damaged, or replaced by hand)")


def settle_params(path: str) -> None:
  """Finishes what a writer stopped between the summary and the rename: a
  pending parameter file the summary points to becomes ``best_params.msgpack``;
  one it does not point to (a round that did not complete) is removed; with a
  summary that cannot be read, it is left for the damage to be dealt with.
  Call it only while holding the writer lock."""
  pending = os.path.join(path, PENDING_PARAMS_FILE)
  if not os.path.exists(pending):
    return
  summary, problem = read_json(os.path.join(path, SUMMARY_FILE))
  if problem is not None and os.path.exists(os.path.join(path, SUMMARY_FILE)):
    return
  pointer = summary.get("best_params") if isinstance(summary, dict) else None
  with open(pending, "rb") as f:
    found = hashlib.file_digest(f, "sha256").hexdigest()  # Piece by piece, as read_params.
  if isinstance(pointer, dict) and pointer.get("sha256") == found:
    os.replace(pending, os.path.join(path, PARAMS_FILE))
  else:
    os.unlink(pending)
