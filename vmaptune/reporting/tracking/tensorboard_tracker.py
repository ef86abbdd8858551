"""TensorBoard: one HParams session per trial, written without TensorFlow.

Layout under ``logdir`` (default ``runs/tensorboard``)::

  <logdir>/<run name>/                the experiment: hyperparameters and metrics
  <logdir>/<run name>/r<round>-t<trial>/   one session per trial (rounds from 1, as shown)

The run name is the run directory's name and a short hash of its path
(``digits-1a2b3c4d``: two runs of the same name stay apart), or
``run-<date>-<time>`` for a run without a directory.

Metrics are the objective's (the config's ``scoring``), by record field:
``val_accuracy`` and ``val_loss`` for classification, ``val_mse`` and
``val_mae`` for regression, and so on. The run's directory holds the
experiment summary (tag ``_hparams_/experiment``: each hyperparameter with
its domain from the space, every ``val_<metric>`` and ``train/epoch_loss``),
the settings (text ``run/config``), each round's scalars (``round/...``:
best and median of the ranking metric, ``round/best_val_accuracy`` for
classification, diverged trials; step = round index from 0), and, once
known, the chosen trial (``chosen/val_<metric>``, ...), the confirmation
(``confirmation/...``), the final fit (``final/val_<metric>`` and
``final/test_<metric>``) and the attached files (PNG figures as images,
other files as their paths). Each trial's directory holds its session start
(``_hparams_/session_start_info``: hyperparameter values, the session's
own group), every ``val_<metric>`` at step = its last epoch,
``train/epoch_loss`` at step = each epoch it trained (from 0), its vmaptune
status (text ``trial/status``) and its session end (success; failure if it
diverged). Values TensorBoard cannot draw are left out: a diverged trial
has no ``val_<metric>`` (an empty cell in the HParams table), and
non-finite epoch losses have no point.

Hyperparameter values: numbers as floats; choices (structural or not) and
anything else as strings (``'relu'`` -> ``relu``, ``(32, 32)`` ->
``(32, 32)``), so each column has one type.

Event files are written with TensorBoard's own record writer (no
TensorFlow), each in one go into a temporary file created exclusively, then
renamed: a file named ``events.out.tfevents.*`` is complete. That makes the tracker
idempotent: a trial whose directory holds an event file, and a run-level
part (experiment, round, chosen, confirmation, final fit, one file) whose
event file exists, are not written again, so exporting twice or resuming a
live run adds nothing. The chosen trial, the confirmation, the final fit and
the files are named by their content, at step = the rounds completed: a
later export of a run that went on writes the new choice beside the old.
``tensorboard --logdir <logdir>/<run name>`` shows one run's HParams view
(TensorBoard reads one experiment summary per logdir; sessions of several runs
under one logdir share its columns).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tensorboard.compat.proto import event_pb2, summary_pb2, types_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

from vmaptune.reporting.tracking.base import Tracker
from vmaptune.rundir.files import write_atomic
from vmaptune.rundir.records import RoundEntry, TrialRecord
from vmaptune.space.distributions import describe_values, freeze
from vmaptune.trials.scoring import Scoring

DEFAULT_LOGDIR = os.path.join("runs", "tensorboard")
MARK = ".vmaptune."  # Event files are named events.out.tfevents.<time>.vmaptune.<part>.
ROUND_COUNTS = ("diverged", "kept", "trials", "wall_s", "trials_per_s")
_last_stamp = [0]  # Microseconds of the last file name: names sort in the order written.


def _number(value: Any) -> float | None:
  """A finite number as a float, else ``None`` (TensorBoard draws numbers only)."""
  if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
    return None
  return float(value)


def metric_columns(scoring: Scoring) -> list[tuple[str, str, int]]:
  """The HParams metrics ``(tag, display name, dataset)``: every validation
  metric of ``scoring``, then the training loss.

  >>> from vmaptune.trials.scoring import CLASSIFICATION
  >>> [tag for tag, _, _ in metric_columns(CLASSIFICATION)]
  ['val_accuracy', 'val_loss', 'train/epoch_loss']
  """
  return ([(scoring.field(name), scoring.label(name), api_pb2.DATASET_VALIDATION)
           for name in scoring.names]
          + [("train/epoch_loss", "training loss (last epoch)", api_pb2.DATASET_TRAINING)])


def round_scalars(scoring: Scoring) -> tuple[str, ...]:
  """A round entry's keys written as ``round/<key>``: best and median of the
  ranking metric, then the counts.

  >>> from vmaptune.trials.scoring import CLASSIFICATION
  >>> round_scalars(CLASSIFICATION)[:2]
  ('best_val_accuracy', 'median_val_accuracy')
  """
  return (scoring.best_field, scoring.median_field) + ROUND_COUNTS


def hparam_value(value: Any, spec: Mapping[str, Any] | None) -> float | str:
  """A record's hyperparameter value as the HParams plugin holds it: numbers
  as floats, a Choice's values and anything else as strings.

  >>> hparam_value(2, {"type": "IntUniform"}), hparam_value([32, 32], {"type": "Choice"})
  (2.0, '(32, 32)')
  """
  if (spec or {}).get("type") != "Choice" and _number(value) is not None:
    return float(value)
  value = freeze(value)  # JSON lists back to the tuples a Choice holds.
  return value if isinstance(value, str) else repr(value)


def hparam_infos(space: Mapping[str, Mapping[str, Any]]) -> list[summary_v2.HParam]:
  """One HParam per parameter of a space as ``config.json`` holds it, with its domain."""
  infos = []
  for name, spec in space.items():
    domain = None
    if spec.get("type") == "Choice":
      domain = summary_v2.Discrete([hparam_value(v, spec) for v in spec["values"]])
    elif _number(spec.get("low")) is not None and _number(spec.get("high")) is not None:
      domain = summary_v2.RealInterval(float(spec["low"]), float(spec["high"]))
    fields = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "type")
    infos.append(summary_v2.HParam(name, domain, description=f"{spec.get('type')}({fields})"))
  return infos


def session_name(record: Mapping[str, Any]) -> str:
  """A trial's directory (and session group): ``r<round from 1>-t<trial>``.

  >>> session_name({"round": 0, "trial": 3})
  'r1-t3'
  """
  return f"r{int(record['round']) + 1}-t{int(record['trial'])}"


def default_run_name(key: str | None, logdir: str) -> str:
  """The run's directory under ``logdir``: see the module."""
  if key is not None:
    digest = hashlib.sha256(os.path.abspath(key).encode()).hexdigest()[:8]
    return f"{os.path.basename(os.path.normpath(key))}-{digest}"
  name = time.strftime("run-%Y%m%d-%H%M%S")
  taken = 1
  while os.path.exists(os.path.join(logdir, name if taken == 1 else f"{name}-{taken}")):
    taken += 1
  return name if taken == 1 else f"{name}-{taken}"


# --- summaries: the protos the plugins read -----------------------------------------------------


def scalars(values: Mapping[str, Any]) -> summary_pb2.Summary:
  """Scalars (the plugin migrates ``simple_value``); non-finite ones left out."""
  summary = summary_pb2.Summary()
  for tag, value in values.items():
    if _number(value) is not None:
      summary.value.add(tag=tag, simple_value=float(value))
  return summary


def text(tag: str, markdown: str) -> summary_pb2.Summary:
  """A text summary (markdown, rendered by the Text tab)."""
  summary = summary_pb2.Summary()
  summary.value.add(tag=tag, metadata=text_metadata.create_summary_metadata(tag, ""),
                    tensor=tensor_util.make_tensor_proto(markdown, dtype=types_pb2.DT_STRING))
  return summary


def session_end(status: int) -> summary_pb2.Summary:
  """The HParams plugin's session end (the summary_v2 module has no builder for it)."""
  data = plugin_data_pb2.HParamsPluginData(
      session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time()))
  summary = summary_pb2.Summary()
  summary.value.add(tag=metadata.SESSION_END_INFO_TAG, tensor=metadata.NULL_TENSOR,
                    metadata=metadata.create_summary_metadata(data))
  return summary


def image(tag: str, png: bytes) -> summary_pb2.Summary:
  """A PNG as an image summary (width and height from its header)."""
  width, height = struct.unpack(">II", png[16:24])
  summary = summary_pb2.Summary()
  summary.value.add(tag=tag, image=summary_pb2.Summary.Image(
      height=height, width=width, colorspace=4, encoded_image_string=png))
  return summary


def _status(record: Mapping[str, Any]) -> str:
  """``finished, kept (lane 3)``: why a trial stopped, and where it came from."""
  parent = record.get("parent", -1)
  return (str(record["status"]) + (", kept" if record.get("kept") else "")
          + (f", from trial {parent}'s weights" if parent >= 0 else "")
          + f" (lane {record.get('lane')})")


def _table(values: Mapping[str, Any]) -> str:
  rows = "\n".join(f"| {k} | {v} |" for k, v in values.items())
  return "| | |\n|---|---|\n" + rows


# --- files --------------------------------------------------------------------------------------


def written_parts(directory: str) -> set[str]:
  """The parts whose event files ``directory`` holds (see the module)."""
  if not os.path.isdir(directory):
    return set()
  return {name.split(MARK, 1)[1] for name in os.listdir(directory)
          if "tfevents" in name and MARK in name}


def write_events(directory: str, part: str, summaries: Sequence[tuple[int, Any]]) -> str:
  """Writes ``(step, summary)`` pairs as one event file of ``directory``,
  complete or not at all: written into a temporary file created exclusively
  (a name of its own, without "tfevents", which TensorBoard skips), then
  renamed over the event file's name (a link there is replaced, not written
  through).

  Returns:
    the event file's path.
  """
  now = time.time()
  stamp = _last_stamp[0] = max(int(now * 1e6), _last_stamp[0] + 1)
  name = f"events.out.tfevents.{stamp // 1_000_000:010d}.{stamp % 1_000_000:06d}{MARK}{part}"
  events = io.BytesIO()
  writer = RecordWriter(events)
  writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
  for step, summary in summaries:
    if not summary.value:  # Nothing TensorBoard could draw (a diverged trial's scores).
      continue
    writer.write(event_pb2.Event(wall_time=now, step=step, summary=summary).SerializeToString())
  return write_atomic(os.path.join(directory, name), events.getvalue(), stem=part,
                      durable=False)  # One file per trial: no fsync each.


# --- the tracker --------------------------------------------------------------------------------


class TensorBoardTracker(Tracker):
  """Writes a run as TensorBoard event files for the HParams view (see the module).

  Args:
    logdir: the directory runs are written under (default ``runs/tensorboard``,
      relative to the working directory); ``tensorboard --logdir`` it.
    run_name: the run's directory under ``logdir`` (default: see the module).

  Each call writes and closes its files: nothing is held between calls.
  """

  name = "tensorboard"

  def __init__(self, logdir: str | None = None, run_name: str | None = None):
    self.logdir = logdir or DEFAULT_LOGDIR
    self.run_name = run_name
    self.run_dir: str | None = None
    self._space: dict[str, Any] = {}
    self._parts: set[str] = set()
    self.scoring: Scoring | None = None  # The run's, once started.

  def start(self, config: Mapping[str, Any], key: str | None = None) -> None:
    self.run_dir = os.path.join(self.logdir, self.run_name or default_run_name(key, self.logdir))
    self._space = dict(config.get("space") or {})
    self.scoring = Scoring.from_dict(config.get("scoring"))
    self._parts = written_parts(self.run_dir)
    metrics = [summary_v2.Metric(tag, display_name=shown, dataset_type=kind)
               for tag, shown, kind in metric_columns(self.scoring)]
    settings = json.dumps(dict(config), indent=2, default=str)
    self._write_part("experiment", lambda: [
        (0, summary_v2.hparams_config_pb(hparam_infos(self._space), metrics, time.time())),
        (0, text("run/config", "    " + settings.replace("\n", "\n    ")))])  # A code block.

  def log_round(self, entry: Mapping[str, Any] | None,
                records: Sequence[Mapping[str, Any]]) -> None:
    if self.run_dir is None:
      raise RuntimeError("TensorBoardTracker.log_round before start")
    for record in sorted(records, key=lambda r: (r["round"], r["trial"])):
      directory = os.path.join(self.run_dir, session_name(record))
      if not written_parts(directory):
        write_events(directory, "trial", self._trial_summaries(record))
    if entry:
      index = RoundEntry.from_json(dict(entry), self.scoring, complete=False).round
      values = {f"round/{k}": entry.get(k) for k in round_scalars(self.scoring)}
      self._write_part(f"round-{index:04d}", lambda: [(index, scalars(values))])

  def _trial_summaries(self, record: Mapping[str, Any]) -> list[tuple[int, Any]]:
    name = session_name(record)
    trial = TrialRecord.from_json(dict(record), self.scoring)
    hparams = {k: hparam_value(v, self._space.get(k)) for k, v in trial.hparams.items()}
    start, epochs = trial.start_epoch, trial.epochs
    diverged = trial.status == "diverged"
    return [
        (0, summary_v2.hparams_pb(hparams, trial_id=name, start_time_secs=time.time())),
        *((start + i, scalars({"train/epoch_loss": loss}))
          for i, loss in enumerate(trial.epoch_loss or ())),
        (max(start + epochs - 1, 0), scalars({self.scoring.field(metric): value
                                              for metric, value in trial.metrics.items()})),
        (0, text("trial/status", _status(record))),
        (0, session_end(api_pb2.STATUS_FAILURE if diverged else api_pb2.STATUS_SUCCESS)),
    ]

  def finish(self, summary: Mapping[str, Any], files: Mapping[str, str] | None = None) -> None:
    if self.run_dir is None:
      raise RuntimeError("TensorBoardTracker.finish before start")
    chosen, confirmation, final = (summary.get(k) for k in ("chosen", "confirmation", "final_fit"))
    # A part is named by its content: a later choice (more rounds, a resumed run) is written
    # again, at step = the rounds completed then; the same choice is not.
    step = len(summary.get("rounds", []))
    fields = [self.scoring.field(metric) for metric in self.scoring.names]
    if chosen:
      where = f"round {int(chosen['round']) + 1}, trial {chosen['trial']}"
      self._write_part(_named("chosen", chosen), lambda: [
          (step, scalars({f"chosen/{field}": chosen.get(field) for field in fields})),
          (step, text("chosen/configuration", f"{where}: {describe_values(chosen['hparams'])}"
                      "\n\n" + _table(chosen["hparams"])))])
    if confirmation:
      self._write_part(_named("confirmation", confirmation), lambda: [(step, scalars(
          {f"confirmation/{k}": confirmation.get(k) for k in ("mean", "sd", "optimism")}))])
    if final:
      self._write_part(_named("final-fit", final), lambda: [(step, scalars(
          {f"final/{k}": final.get(k)
           for k in fields + [self.scoring.test_field(m) for m in self.scoring.names]}))])
    for name, path in sorted((files or {}).items()):
      with open(path, "rb") as f:
        content = hashlib.sha256(f.read()).hexdigest()[:12]
      self._write_part("file-" + "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
                       + "-" + content,
                       lambda name=name, path=path: [(step, _file_summary(name, path))])

  def _write_part(self, part: str, summaries: Callable[[], list[tuple[int, Any]]]) -> None:
    """Writes a run-level part unless its event file exists (built only when written)."""
    if part not in self._parts:
      write_events(self.run_dir, part, summaries())
      self._parts.add(part)


def _named(part: str, content: Any) -> str:
  """``part-<12 hex digits of the content's SHA-256>``."""
  digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
  return f"{part}-{digest[:12]}"


def _file_summary(name: str, path: str) -> summary_pb2.Summary:
  """A PNG as an image, another file as its path."""
  if name.endswith(".png"):
    with open(path, "rb") as f:
      png = f.read()
    if png.startswith(b"\x89PNG\r\n\x1a\n"):
      return image(f"files/{name}", png)
  return text(f"files/{name}", os.path.abspath(path))
