"""Run directories: what a run is, resuming it after a crash, loading it back.

A run directory (``tune(..., out=DIR)``, ``vmaptune run CONFIG --out DIR``)
holds ``config.json`` (this module's :func:`snapshot`: settings, space, model,
data), ``trials.jsonl``, ``summary.json`` and, after the final fit,
``best_params.msgpack`` (see :mod:`vmaptune.results`).

**What marks a round complete.** After each round the tuner appends its
records to ``trials.jsonl`` (forced to disk), then replaces ``summary.json``
atomically; a round is complete once the summary lists it. A run killed at
any moment therefore leaves the completed rounds in the summary and, at
worst, some records of the round in progress (perhaps a torn last line) after
them.

**Resuming.** Running the same config into a directory that holds a run
continues it: the records past the last completed round are cut off, the
completed rounds are rebuilt from their records (hyperparameters are float32
values written as exact decimal floats), their ranking and narrowing are
replayed with the same code that ran them (and checked against the ranges the
summary recorded), and the next round starts from the narrowed space with its
own round-indexed keys. The resumed run's records and choice are those of an
uninterrupted run. A finished run whose final fit was saved is restored with
it, without retraining or reading the test split again. Everything in
``config.json`` must match, except ``rounds``, which may be raised to extend
a run (or lowered, to no fewer than the rounds completed); the devices may
differ (with a warning: results then match an uninterrupted run only up to
float rounding). A different config is refused naming what differs, and the
directory is left untouched.

>>> import vmaptune as vt, tempfile
>>> space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1))
>>> out = tempfile.mkdtemp()
>>> first = vt.tune(vt.models.MLP(hidden=(16,)), vt.data.digits(), space, out=out,
...                 population=4, rounds=2, epochs=1)
>>> again = vt.tune(vt.models.MLP(hidden=(16,)), vt.data.digits(), space, out=out,
...                 population=4, rounds=2, epochs=1)   # Nothing left to train.
>>> again.best == first.best, load_run(out).complete
(True, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

import flax.serialization
import jax
import numpy as np

from vmaptune.data import Dataset
from vmaptune.distributed import is_first_process, on_first_process, share_from_first_process
from vmaptune.results import (
  CONFIG_FILE,
  PARAMS_FILE,
  SUMMARY_FILE,
  TRIALS_FILE,
  FinalFit,
  RoundResult,
  RunDirectory,
  best_trial,
  write_json,
)
from vmaptune.space import IntUniform, Space, describe_values
from vmaptune.strategies import keep_and_narrow
from vmaptune.structural import BATCH_SIZE, Buckets, ModelSpec, build_model

FORMAT = 1  # Version of config.json's layout.
# Config entries that may change between a run and its resumption.
MAY_CHANGE = ("settings.rounds",)


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
    settings: the run's settings (:meth:`vmaptune.Settings.to_dict`).
    space: the original search space.
    model: the model's description (a module's repr, a function's name).
    parameters: parameter count of each bucket's model, in bucket order (a
      changed architecture changes them).
    data: the dataset (described, and fingerprinted without its test split).
  """
  return json.loads(json.dumps({
      "format": FORMAT, "settings": dict(settings), "space": space.to_dict(),
      "model": {"description": model, "parameters": list(parameters)},
      "data": {"description": repr(data), "feature_shape": list(data.feature_shape),
               "num_classes": data.num_classes, "fingerprint": data_fingerprint(data)},
      "environment": {"devices": [str(d) for d in jax.devices()],
                      "processes": jax.process_count(), "jax": jax.__version__}}))


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
    return {k: v for k, v in _flatten(dict(snapshot)).items()
            if not k.startswith("environment") and k not in MAY_CHANGE}

  old, new = compared(stored), compared(current)
  shown = lambda values, key: _short(values[key]) if key in values else "absent"
  return [f"{key}: {shown(old, key)} in the run directory, {shown(new, key)} now"
          for key in sorted(set(old) | set(new))
          if key not in old or key not in new or old[key] != new[key]]


@dataclasses.dataclass(frozen=True)
class Restored:
  """What a resumed run starts from (the same on every process).

  Attributes:
    summary: ``summary.json``; its ``rounds`` are the completed rounds.
    records: the completed rounds' records, in file order.
    params: ``best_params.msgpack``'s bytes when the summary holds a final fit.
  """

  summary: dict[str, Any]
  records: list[dict[str, Any]]
  params: bytes | None


def _read_records(path: str, completed: int) -> tuple[list[dict[str, Any]], int]:
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
  with open(files[CONFIG_FILE]) as f:
    stored = json.load(f)
  changed = differences(stored, config)
  if changed:
    raise FileExistsError(f"{path} already holds a run of a different config, which is "
                          f"neither resumed nor overwritten; it differs in "
                          f"{'; '.join(changed)}. Choose another --out / out directory, or "
                          "run the same config to resume it")
  summary = {"rounds": []}
  if os.path.exists(files[SUMMARY_FILE]):
    with open(files[SUMMARY_FILE]) as f:
      summary = json.load(f)
  completed = len(summary["rounds"])
  rounds = config["settings"]["rounds"]
  if rounds < completed:
    raise FileExistsError(f"{path} already holds {completed} completed rounds; rounds={rounds} "
                          f"cannot resume it (expected rounds >= {completed})")
  records, end = _read_records(files[TRIALS_FILE], completed)
  counts = [sum(r["round"] == i for r in records) for i in range(completed)]
  if counts != [r["trials"] for r in summary["rounds"]]:
    raise FileExistsError(f"{path}: {TRIALS_FILE} holds {counts} trials for the completed "
                          f"rounds but {SUMMARY_FILE} lists "
                          f"{[r['trials'] for r in summary['rounds']]}; the records are "
                          "damaged, so the run cannot be resumed")
  if os.path.exists(files[TRIALS_FILE]) and os.path.getsize(files[TRIALS_FILE]) > end:
    os.truncate(files[TRIALS_FILE], end)  # The round in progress when the run stopped.
  _warn_if_moved(path, stored["environment"], config["environment"])
  if stored != config:  # Only `rounds` or the environment changed.
    write_json(files[CONFIG_FILE], config)
  params_path = os.path.join(path, PARAMS_FILE)
  params = None
  if summary.get("final_fit") and os.path.exists(params_path):
    with open(params_path, "rb") as f:
      params = f.read()
  return {"summary": summary, "records": records, "params": params}


def _warn_if_moved(path: str, stored: Mapping[str, Any], current: Mapping[str, Any]) -> None:
  if (len(stored["devices"]), stored["processes"]) != (len(current["devices"]),
                                                      current["processes"]):
    warnings.warn(f"resuming {path} on {len(current['devices'])} devices in "
                  f"{current['processes']} processes; it ran on {len(stored['devices'])} in "
                  f"{stored['processes']}: later rounds equal an uninterrupted run only up to "
                  "float rounding", RuntimeWarning, stacklevel=4)


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
    state = Restored(state["summary"], state["records"], params)
  return RunDirectory(path, create=False), state


def _column(records: list[dict[str, Any]], key: str, dtype: Any) -> np.ndarray:
  return np.array([math.nan if r[key] is None else r[key] for r in records], dtype)


def _hparams(records: list[dict[str, Any]], space: Space) -> dict[str, np.ndarray]:
  """``{name: [T]}`` with the dtypes a round produces (float32 traced values,
  int64 structural integers, the values themselves for a Choice)."""
  columns = {}
  for name, dist in space.items():
    values = [r["hparams"][name] for r in records]
    if not dist.structural:
      columns[name] = np.array(values, np.float32)  # Exact: the record is a float32's value.
    elif isinstance(dist, IntUniform):
      columns[name] = np.array(values, np.int64)
    else:
      columns[name] = np.empty(len(values), object)
      for i, value in enumerate(values):
        columns[name][i] = dist.value(value)  # JSON lists back to tuples.
  return columns


def _round_from_records(records: list[dict[str, Any]], summary: dict[str, Any], index: int,
                        space: Space, bounds: Space, settings: Any) -> RoundResult:
  """Rebuilds round ``index`` from its records, replaying its ranking and narrowing."""
  if [r["trial"] for r in records] != list(range(len(records))):
    raise ValueError(f"round {index}'s records are out of order")
  epochs = settings.epochs
  curves = np.full((len(records), epochs), np.nan, np.float32)
  for row, record in enumerate(records):
    start = record["start_epoch"]
    curves[row, start:start + record["epochs"]] = [
        math.nan if v is None else v for v in record["epoch_loss"]]
  seeded = records[0].get("seed_accuracy") is not None
  trials = {
      "hparams": _hparams(records, space), "lane": _column(records, "lane", np.int64),
      "bracket": _column(records, "bracket", np.int64),
      "start_epoch": _column(records, "start_epoch", np.int64),
      "epochs": _column(records, "epochs", np.int64),
      "parent": _column(records, "parent", np.int64),
      "status": np.array([r["status"] for r in records], object),
      "val_accuracy": _column(records, "val_accuracy", np.float64),
      "val_loss": _column(records, "val_loss", np.float64), "epoch_loss": curves,
      "seed_accuracy": np.array([[math.nan if a is None else a for a in r["seed_accuracy"]]
                                 for r in records], np.float64) if seeded else None}
  lanes, kept, next_space = keep_and_narrow(trials, space, bounds, settings.keep,
                                            settings.margin)
  result = RoundResult(index=index, space=space, strategy=summary["strategy"], budget=epochs,
                       lanes=lanes, kept=kept, next_space=next_space, wall_s=summary["wall_s"],
                       compile_s=summary["compile_s"], trace_s=summary["trace_s"],
                       compiles=summary["compiles"], **trials)
  if _json([t.to_record() for t in result.trials()]) != records or \
      _json(next_space.to_dict()) != summary["next_space"]:
    raise ValueError(f"round {index} replayed from its records does not give the records "
                     "and narrowed ranges the run wrote (damaged records, or a vmaptune "
                     "that ranks or narrows differently)")
  return result


def _json(value: Any) -> Any:
  return json.loads(json.dumps(value))


def restore_rounds(restored: Restored, space: Space, settings: Any) -> list[RoundResult]:
  """The completed rounds of a resumed run, as the run computed them.

  Args:
    restored: from :func:`open_run`.
    space: the original space.
    settings: the run's :class:`vmaptune.Settings` (``epochs``, ``keep``,
      ``margin``).

  Raises:
    FileExistsError: the records do not replay to what the summary recorded.
  """
  rounds: list[RoundResult] = []
  current = space
  for index, summary in enumerate(restored.summary["rounds"]):
    records = [r for r in restored.records if r["round"] == index]
    if _json(current.to_dict()) != summary["space"]:
      raise FileExistsError(f"round {index}'s ranges in {SUMMARY_FILE} are not the ones the "
                            "earlier rounds narrowed to; the run cannot be resumed")
    try:
      rounds.append(_round_from_records(records, summary, index, current, space, settings))
    except (KeyError, ValueError, TypeError) as e:
      raise FileExistsError(f"the run directory's records cannot be resumed: {e}") from e
    current = rounds[-1].next_space
  return rounds


def restore_final_fit(restored: Restored, rounds: list[RoundResult],
                      buckets: Buckets) -> FinalFit | None:
  """The saved final fit of a resumed run, if the summary holds one for the
  chosen trial of ``rounds`` and its parameters were saved; else ``None``
  (the fit runs again when asked for)."""
  final, best = restored.summary.get("final_fit"), best_trial(rounds)
  if not final or restored.params is None or best is None or \
      (final["round"], final["trial"]) != (best.round, best.trial):
    return None
  bucket = buckets.find(best.hparams)
  return FinalFit(trial=best, schedule=rounds[best.round].schedule(best.trial),
                  val_accuracy=final["val_accuracy"], val_loss=final["val_loss"],
                  test_accuracy=final["test_accuracy"], test_loss=final["test_loss"],
                  params=flax.serialization.msgpack_restore(restored.params),
                  model=bucket.model, batch_size=bucket.batch_size)


@dataclasses.dataclass(frozen=True)
class Run:
  """A run directory, read back (see :func:`load_run`).

  Attributes:
    path: the directory.
    config: ``config.json`` (``settings``, ``space``, ``model``, ``data``,
      ``environment``).
    summary: ``summary.json`` (``None`` before the first round completed).
    records: the trial records of the completed rounds (a round the run was
      killed in is left out).
  """

  path: str
  config: dict[str, Any]
  summary: dict[str, Any] | None
  records: list[dict[str, Any]]

  @property
  def settings(self) -> dict[str, Any]:
    return self.config["settings"]

  @property
  def space(self) -> Space:
    """The original search space."""
    return Space.from_dict(self.config["space"])

  @property
  def rounds_completed(self) -> int:
    return len(self.summary["rounds"]) if self.summary else 0

  @property
  def complete(self) -> bool:
    """Every round ran (the final fit may still be missing)."""
    return self.rounds_completed == self.settings["rounds"]

  @property
  def chosen(self) -> dict[str, Any] | None:
    """The chosen trial's record (``None`` before a round completed)."""
    return self.summary.get("chosen") if self.summary else None

  @property
  def final_fit(self) -> dict[str, Any] | None:
    """The final fit's scores (``None`` until it ran)."""
    return self.summary.get("final_fit") if self.summary else None

  def top(self, count: int = 10) -> list[dict[str, Any]]:
    """The best ``count`` records, ranked as the tuner ranks: epochs reached,
    then validation accuracy, then loss; diverged trials left out."""
    alive = [r for r in self.records if r["val_accuracy"] is not None]
    alive.sort(key=lambda r: (-(r["start_epoch"] + r["epochs"]), -r["val_accuracy"],
                              r["val_loss"], r["round"], r["trial"]))
    return alive[:count]

  def best_model(self, model: ModelSpec) -> Any:
    """The module the best parameters belong to: ``model`` with the chosen
    trial's structural values (``model`` itself without structure)."""
    if self.chosen is None:
      raise ValueError(f"{self.path}: no round completed, so nothing was chosen")
    space = self.space
    values = {name: space[name].value(self.chosen["hparams"][name])
              for name in space.structural_names if name != BATCH_SIZE}
    return build_model(model, values)

  def best_params(self, model: ModelSpec | None = None) -> Any:
    """The final fit's parameters (``{"params"}`` contents, no lane axis).

    Args:
      model: the run's model (a module, or a function of the structural
        values); when given, the parameters are checked against the shapes
        it initialises with (see :meth:`best_model`).

    Raises:
      FileNotFoundError: no final fit was saved yet.
      ValueError: the parameters do not fit ``model``.
    """
    path = os.path.join(self.path, PARAMS_FILE)
    if not self.final_fit or not os.path.exists(path):
      raise FileNotFoundError(f"{self.path} holds no best parameters yet: the run's final fit "
                              "has not finished; run the same config into it again to resume "
                              "the run and fit")
    with open(path, "rb") as f:
      params = flax.serialization.msgpack_restore(f.read())
    if model is not None:
      _check_params(params, self.best_model(model), self.config["data"]["feature_shape"])
    return params

  def describe(self, top: int = 10) -> str:
    """What ``vmaptune show`` prints: progress, the chosen config and its
    scores, and the top trials."""
    settings = self.settings
    done, rounds = self.rounds_completed, settings["rounds"]
    state = ("complete" if self.complete else
             "not finished: run the same config into it to resume")
    lines = [f"run {self.path}: {done} of {rounds} rounds, {state}",
             f"  {self.config['data']['description']}; population {settings['population']}, "
             f"{settings['epochs']} epochs, strategy {settings['strategy']}, seed "
             f"{settings['seed']}"]
    if self.summary and self.summary.get("error"):
      lines.append(f"  stopped with an error: {self.summary['error']}")
    chosen = self.chosen
    if chosen is not None:
      lines.append(f"chosen config (round {chosen['round'] + 1}, trial {chosen['trial']}): "
                   f"{describe_values(chosen['hparams'], sep='  ')}")
      scores = f"  val accuracy  {chosen['val_accuracy']:.4f} (search)"
      final = self.final_fit
      if final is not None:
        scores += f"  {final['val_accuracy']:.4f} (refit alone)"
        test = final["test_accuracy"]
        scores += "\n  test accuracy " + ("n/a (empty test split)" if test is None
                                          or math.isnan(test) else f"{test:.4f}")
        scores += f"\n  best parameters: {os.path.join(self.path, PARAMS_FILE)}"
      lines.append(scores)
    best = self.top(top)
    if best:
      lines.append(f"top {len(best)} of {len(self.records)} trials:")
      lines.append("  round  trial  epochs  val_acc  val_loss  hparams")
      lines += [f"  {r['round'] + 1:>5}  {r['trial']:>5}  {r['start_epoch'] + r['epochs']:>6}  "
                f"{r['val_accuracy']:.4f}  {r['val_loss']:>8.4f}  "
                f"{describe_values(r['hparams'])}" for r in best]
    return "\n".join(lines)


def _check_params(params: Any, model: Any, feature_shape: list[int]) -> None:
  """Raises ``ValueError`` naming the first parameter whose shape ``model`` does not share."""
  x = jax.ShapeDtypeStruct((1, *feature_shape), np.float32)
  try:
    expected = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  except Exception as e:  # The user's model: report what it raised.
    raise ValueError(f"model {type(model).__name__} failed to initialise on features of shape "
                     f"{x.shape}: {type(e).__name__}: {e}") from e
  want = {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_leaves_with_path(expected)}
  have = {jax.tree_util.keystr(k): tuple(np.shape(v))
          for k, v in jax.tree_util.tree_leaves_with_path(params)}
  for name in sorted(set(want) | set(have)):
    if want.get(name) != have.get(name):
      raise ValueError(f"the saved parameters do not fit model {type(model).__name__}: "
                       f"{name} has shape {have.get(name, 'none')} in the file, "
                       f"{want.get(name, 'none')} in the model; pass the run's model")


def load_run(path: str | os.PathLike) -> Run:
  """Reads a run directory back (read-only: a killed run is left as it is),
  e.g. ``load_run(out).chosen["hparams"]`` or ``load_run(out).top(5)``.

  Raises:
    FileNotFoundError: ``path`` holds no run (no ``config.json``).
  """
  path = os.fspath(path)
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{path} holds no vmaptune run (no {CONFIG_FILE}); expected the "
                            "directory given as out= / --out")
  with open(config_path) as f:
    config = json.load(f)
  summary = None
  if os.path.exists(os.path.join(path, SUMMARY_FILE)):
    with open(os.path.join(path, SUMMARY_FILE)) as f:
      summary = json.load(f)
  completed = len(summary["rounds"]) if summary else 0
  records, _ = _read_records(os.path.join(path, TRIALS_FILE), completed)
  return Run(path, config, summary, records)


def load_best_params(path: str | os.PathLike, model: ModelSpec | None = None) -> Any:
  """The final fit's parameters saved in a run directory.

  Args:
    path: the run directory.
    model: the run's model, to check the parameters against (optional).

  Returns:
    The parameter pytree: ``model.apply({"params": params}, x)`` gives logits
    (for a structural run, apply ``load_run(path).best_model(model)``).

  Raises:
    FileNotFoundError: no run, or no final fit saved yet.
    ValueError: the parameters do not fit ``model``.
  """
  return load_run(path).best_params(model)
