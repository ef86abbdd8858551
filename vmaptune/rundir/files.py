"""The run directory's files: their names, atomic writes, reading records back,
and ``config.json`` (what a run is, how two runs differ, older formats)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from vmaptune.data import Dataset
from vmaptune.space import Space

TRIALS_FILE = "trials.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
PARAMS_FILE = "best_params.msgpack"
FORMAT = 2  # Version of config.json's layout: 2 names the sampler (1 had keep and margin).
# Config entries that may change between a run and its resumption (the
# confirmation follows the last round; a changed one runs again).
MAY_CHANGE = ("settings.rounds", "settings.confirm")


def write_atomic(path: str | os.PathLike, data: bytes) -> str:
  """Writes ``data`` to ``path`` atomically and durably: a crash (or a kill)
  leaves either the old file or the new one, never a mix; creates parent
  directories. Returns the path written."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return path


def write_json(path: str | os.PathLike, value: Any) -> str:
  """Writes ``value`` as indented JSON, atomically (see :func:`write_atomic`)."""
  return write_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def read_trials(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads ``trials.jsonl`` from a run directory (or the file itself), every line."""
  path = os.fspath(path)
  if os.path.isdir(path):
    path = os.path.join(path, TRIALS_FILE)
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def data_fingerprint(data: Dataset) -> str:
  """SHA-256 of the train and validation splits (never the sealed test split)."""
  digest = hashlib.sha256()
  for array in (data.train.x, data.train.y, data.val.x, data.val.y):
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype}{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def snapshot(settings: Mapping[str, Any], space: Space, model: str,
             parameters: list[int], data: Dataset) -> dict[str, Any]:
  """What a run is, as ``config.json`` holds it (JSON-ready).

  Args:
    settings: the run's settings (:meth:`vmaptune.settings.Settings.to_dict`).
    space: the original search space.
    model: the model's description (a module's repr, a function's name).
    parameters: parameter count of each bucket's model, in bucket order.
    data: the dataset (described, and fingerprinted without its test split).
  """
  return json.loads(json.dumps({
      "format": FORMAT, "settings": dict(settings), "space": space.to_dict(),
      "model": {"description": model, "parameters": list(parameters)},
      "data": {"description": repr(data), "feature_shape": list(data.feature_shape),
               "num_classes": data.num_classes, "fingerprint": data_fingerprint(data)},
      "environment": {"devices": [str(d) for d in jax.devices()],
                      "processes": jax.process_count(), "jax": jax.__version__}}))


def upgrade(config: dict[str, Any]) -> dict[str, Any]:
  """``config.json`` in the current format: format 1 (no ``format`` 2) named
  the narrowing settings ``keep`` and ``margin``, now the narrow sampler's,
  and had no confirmation stage (``confirm="off"``)."""
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


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(value, dict) and value:
    flat = {}
    for key, item in value.items():
      flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat
  return {prefix: value}


def _short(value: Any, limit: int = 80) -> str:
  text = " ".join(repr(value).split())
  return text if len(text) <= limit else text[:limit - 3] + "..."


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """What differs between two snapshots (the environment and ``rounds`` aside),
  as ``"path: <stored> in the run directory, <current> now"`` lines."""
  def compared(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _flatten(upgrade(dict(snapshot))).items()
            if not k.startswith("environment") and k not in MAY_CHANGE}

  old, new = compared(stored), compared(current)
  shown = lambda values, key: _short(values[key]) if key in values else "absent"
  return [f"{key}: {shown(old, key)} in the run directory, {shown(new, key)} now"
          for key in sorted(set(old) | set(new))
          if key not in old or key not in new or old[key] != new[key]]


def read_records(path: str, completed: int) -> tuple[list[dict[str, Any]], int]:
  """The records of rounds ``< completed`` and the byte offset they end at;
  what follows (a round in progress, a torn line) is not returned."""
  records, end = [], 0
  if not os.path.exists(path):
    return records, end
  with open(path, "rb") as f:
    for line in f:
      if not line.endswith(b"\n"):
        break  # Torn by a kill mid-write.
      try:
        record = json.loads(line)
      except ValueError:
        break
      if record["round"] >= completed:
        break
      records.append(record)
      end += len(line)
  return records, end


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)
