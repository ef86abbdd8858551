"""The run directory's files: their names, atomic writes, reading records back,
and ``config.json`` (what a run is, how two runs differ, format 1 read as format 2)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from vmaptune.data import Dataset
from vmaptune.errors import DamagedRunError, RunDirectoryError
from vmaptune.rundir.reading import parse_json, read_lines
from vmaptune.space.space import Space
from vmaptune.trials.scoring import CLASSIFICATION, Scoring

TRIALS_FILE = "trials.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
PARAMS_FILE = "best_params.msgpack"
# New parameters, until the summary that points to them is written (then renamed).
PENDING_PARAMS_FILE = "best_params.next.msgpack"
LOCK_FILE = ".lock"  # Held by the one writer (see vmaptune.rundir.lock).
DAMAGED_DIR = "damaged"  # Where resume_from_intact moves damaged files.
TEMP_SUFFIX = ".tmp"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # Windows has none (nor symbolic links by default).
# A FIFO planted under a file's name must not block its opening.
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
# What write_atomic names its temporary files: ".<name>.<process id>.<8 hex digits>.tmp".
TEMPORARY = re.compile(r"\..+\.[0-9]+\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX))
FORMAT = 2  # Version of config.json's layout: 2 names the sampler (1: keep and margin).
# Config entries that may change between a run and its resumption (the
# confirmation follows the last round; a changed one runs again).
MAY_CHANGE = ("settings.rounds", "settings.confirm", "settings.budget")


def write_atomic(path: str | os.PathLike, data: bytes, stem: str | None = None,
                 durable: bool = True) -> str:
  """Writes ``data`` to ``path`` atomically and durably: a crash (or a kill)
  leaves either the old file or the new one, never a mix; creates parent
  directories. The temporary file is created exclusively in the same folder
  with a name of its own (two writers never share one, and a link planted
  under its name is refused), is removed if the write fails, and is renamed
  over ``path``: a link at ``path`` is replaced, never written through.

  Args:
    stem: the temporary file is ``.<stem>.<pid>.<random>.tmp`` (default: the
      file's name).
    durable: force the file and its folder to disk (``False``: atomic only,
      for files that can be written again, such as TensorBoard's).

  Returns:
    The path written.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{stem or os.path.basename(path)}.{os.getpid()}."
                     f"{secrets.token_hex(4)}{TEMP_SUFFIX}")
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # Refuses what is there.
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      if durable:
        os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.lexists(tmp):
      os.unlink(tmp)
    raise
  if durable:
    sync_directory(directory)
  return path


def open_in_place(path: str, flags: int, mode: int = 0o666) -> int:
  """Opens a file vmaptune changes in place (the writer lock, ``trials.jsonl``)
  without following a link: a symbolic link is refused (``O_NOFOLLOW``), and
  so is a file with other hard links (a directory copied with ``cp -al``
  shares its files with the original) or anything but a regular file.

  Returns:
    The open descriptor (``os.open``'s ``flags``, ``mode``).

  Raises:
    RunDirectoryError: ``path`` is a link or not a regular file; the message
      names it and says what to do. Nothing was written.
  """
  try:
    fd = os.open(path, flags | NOFOLLOW | NONBLOCK, mode)
  except OSError as e:
    if e.errno != errno.ELOOP and not os.path.islink(path):
      raise
    try:
      target = f" (to {os.readlink(path)})"
    except OSError:
      target = ""  # Removed meanwhile.
    raise _linked(path, f"is a symbolic link{target}") from None
  try:
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode):
      raise _linked(path, "is not a regular file")
    if found.st_nlink > 1:
      raise _linked(path, f"has {found.st_nlink} hard links (it is the same file as "
                    f"{found.st_nlink - 1} other name{'s' if found.st_nlink > 2 else ''}: a "
                    "directory copied with cp -al shares its files with the original)")
  except BaseException:
    os.close(fd)
    raise
  return fd


def refuse_links(directory: str, names: tuple[str, ...]) -> None:
  """Refuses the files ``names`` of ``directory`` that exist and could not be
  changed in place (see :func:`open_in_place`); changes nothing."""
  for name in names:
    path = os.path.join(directory, name)
    if os.path.lexists(path):
      os.close(open_in_place(path, os.O_RDONLY))


def _linked(path: str, what: str) -> RunDirectoryError:
  return RunDirectoryError(
      f"{path} {what}: vmaptune changes this file in place, so it writes it only as a "
      "regular file of its own, never through a link (which could change a file outside "
      "the run directory); nothing was written. "
      "Replace it with a file of its own (copy the run directory without links: cp -a, not "
      "cp -al or cp -s), or choose another --out / out directory")


def truncate_in_place(path: str, size: int) -> None:
  """Cuts ``path`` back to ``size`` bytes and forces it to disk, refusing links
  (:func:`open_in_place`)."""
  fd = open_in_place(path, os.O_WRONLY)
  try:
    os.ftruncate(fd, size)
    os.fsync(fd)
  finally:
    os.close(fd)


def copy_durably(source: str, target: str) -> None:
  """Copies ``source`` to a new file ``target`` (with its times and mode), forced
  to disk: after a power cut the copy holds the bytes read. Sync the folder too
  (:func:`sync_directory`) for the copy's name to last."""
  shutil.copy2(source, target)
  fd = os.open(target, os.O_RDONLY | NOFOLLOW)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def sync_directory(directory: str) -> None:
  """Forces a directory's entries (a rename, a new file) to disk, where the
  platform allows it."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass  # Some file systems cannot sync a directory; the rename itself is atomic.
  finally:
    os.close(fd)


def remove_stale_temporaries(directory: str) -> list[str]:
  """Removes the temporary files a killed writer left (named as :func:`write_atomic`
  names them; other files are left alone); call it only while holding the
  writer lock. Returns the names removed."""
  removed = []
  for name in os.listdir(directory):
    if TEMPORARY.fullmatch(name):
      os.unlink(os.path.join(directory, name))
      removed.append(name)
  return removed


def json_bytes(value: Any) -> bytes:
  """``value`` as the run directory's files hold JSON: indented, one final line end."""
  return (json.dumps(value, indent=2) + "\n").encode()


def as_json(value: Any) -> Any:
  """``value`` as JSON reads it back (tuples as lists, keys as strings)."""
  return json.loads(json.dumps(value))


def write_json(path: str | os.PathLike, value: Any) -> str:
  """Writes ``value`` as indented JSON, atomically (see :func:`write_atomic`)."""
  return write_atomic(path, json_bytes(value))


def read_trials(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads ``trials.jsonl`` from a run directory (or the file itself), every
  line, a round in progress included (:func:`vmaptune.load_run` gives the
  completed rounds only).

  Raises:
    FileNotFoundError: there is no such file.
    DamagedRunError: a line is not JSON (a line cut short by a kill included), is
      longer or nests deeper than any record (see :mod:`vmaptune.rundir.reading`).
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    path = os.path.join(path, TRIALS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no such file: {path}")
  records = []
  with contextlib.closing(read_lines(path)) as lines:
    for number, (line, too_long) in enumerate(lines, 1):
      if not too_long and not line.strip():
        continue
      record, problem = (None, too_long) if too_long else parse_json(line)
      if problem is not None:
        raise DamagedRunError(f"{path}: line {number} {problem}; vmaptune.load_run reads the "
                              "completed rounds only", path)
      records.append(record)
  return records


def data_fingerprint(data: Dataset) -> str:
  """SHA-256 of the train and validation splits (never the sealed test split)."""
  digest = hashlib.sha256()
  for array in jax.tree.leaves((data.train, data.val)):
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype}{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def snapshot(settings: Mapping[str, Any], space: Space, model: str,
             parameters: list[int], data: Dataset, scoring: Scoring,
             inputs: Any = None) -> dict[str, Any]:
  """What a run is, as ``config.json`` holds it (JSON-ready).

  Args:
    settings: the run's settings (:meth:`vmaptune.search.settings.Settings.to_dict`).
    space: the original search space.
    model: the model's description (a module's repr, a function's name).
    parameters: parameter count of each bucket's model, in bucket order.
    data: the dataset (described, and fingerprinted without its test split).
    scoring: the objective's metrics (readers rank and label with them).
    inputs: the model's inputs for one example (``[1, ...]``, shapes or
      arrays; default: the features); their shape and dtype are recorded
      so a reader can check saved parameters against a model.
  """
  plain = inputs is None or (hasattr(inputs, "shape") and inputs.dtype == np.float32)
  shape = list(inputs.shape[1:]) if hasattr(inputs, "shape") else list(data.feature_shape)
  # One float32 array is all a reader needs to know (the features' shape); others are spelled out.
  described = {} if plain else {"inputs": input_spec(inputs)}
  return as_json({
      "format": FORMAT, "settings": dict(settings), "space": space.to_dict(),
      "scoring": scoring.to_dict(),
      "model": {"description": model, "parameters": list(parameters)},
      "data": {"description": repr(data), "feature_shape": shape, **described,
               "num_classes": data.num_classes, "fingerprint": data_fingerprint(data)},
      "environment": {"devices": [str(d) for d in jax.devices()],
                      "processes": jax.process_count(), "jax": jax.__version__}})


def input_spec(inputs: Any) -> Any:
  """The model's inputs for one example as JSON: ``{"shape", "dtype"}`` per
  array (without the example axis), in dicts and lists as the inputs nest."""
  if isinstance(inputs, dict):
    return {"dict": {str(k): input_spec(v) for k, v in inputs.items()}}
  if isinstance(inputs, (tuple, list)):
    return {"tuple": [input_spec(v) for v in inputs]}
  return {"shape": list(inputs.shape[1:]), "dtype": str(inputs.dtype)}


def example_inputs(data: Mapping[str, Any]) -> Any:
  """Shapes (``[1, ...]``) of one example's model inputs, from ``config.json``'s
  ``data`` entry (the features' shape, float32, where it spells out no inputs)."""
  def build(spec: Any) -> Any:
    if "dict" in spec:
      return {k: build(v) for k, v in spec["dict"].items()}
    if "tuple" in spec:
      return tuple(build(v) for v in spec["tuple"])
    return jax.ShapeDtypeStruct((1, *spec["shape"]), np.dtype(spec["dtype"]))

  if "inputs" in data:
    return build(data["inputs"])
  return jax.ShapeDtypeStruct((1, *data["feature_shape"]), np.float32)


def upgrade(config: dict[str, Any]) -> dict[str, Any]:
  """``config.json`` in the current format: format 1 (no ``format`` 2) names
  the narrow sampler's settings ``keep`` and ``margin`` as run settings, and
  has no confirmation stage (``confirm="off"``)."""
  config = _with_objective(config)
  settings = config.get("settings", {})
  if config.get("format", 1) >= 2 or "keep" not in settings:
    return config
  settings = dict(settings)
  keep, margin = settings.pop("keep"), settings.pop("margin")
  upgraded = {}
  for key, value in settings.items():  # The sampler goes before the strategy, as Settings has it.
    if key == "strategy":
      upgraded["sampler"] = f"narrow(keep={keep!r}, margin={margin!r})"
    upgraded[key] = value
  upgraded.setdefault("confirm", "off")
  return {**config, "format": 2, "settings": upgraded}


def _with_objective(config: dict[str, Any]) -> dict[str, Any]:
  """A config without an objective (format 1): a classification's."""
  if "settings" not in config or ("objective" in config["settings"] and "scoring" in config):
    return config
  return {**config, "settings": {**config["settings"],
                                 "objective": config["settings"].get("objective",
                                                                     "classification")},
          "scoring": config.get("scoring", CLASSIFICATION.to_dict())}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
  """Nested dicts as one dict of dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
  if isinstance(value, dict) and value:
    flat = {}
    for key, item in value.items():
      flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat
  return {prefix: value}


def _short(value: Any, limit: int = 80) -> str:
  text = " ".join(repr(value).split())
  return text if len(text) <= limit else text[:limit - 3] + "..."


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """What differs between two snapshots (the environment and ``rounds`` aside),
  as ``"path: <stored> in the run directory, <current> now"`` lines."""
  def compared(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flatten(upgrade(dict(snapshot))).items()
            if not k.startswith("environment") and k not in MAY_CHANGE}

  old, new = compared(stored), compared(current)
  shown = lambda values, key: _short(values[key]) if key in values else "absent"
  return [f"{key}: {shown(old, key)} in the run directory, {shown(new, key)} now"
          for key in sorted(set(old) | set(new))
          if key not in old or key not in new or old[key] != new[key]]
