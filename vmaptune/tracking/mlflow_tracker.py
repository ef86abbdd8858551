"""MLflow: one parent run per vmaptune run, one nested run per trial.

The parent run holds the settings and the space (params), each round's
ranges (tags ``round_<i>.ranges`` and ``rounds/round_<i>.json``), the
rounds' best and median validation accuracy (metrics, step = round), the
chosen configuration (tags ``chosen.<name>``), the confirmation and the
final fit's figures (metrics), the summary and the attached files
(artifacts: figures, best parameters). Each trial is a nested run (tag
``mlflow.parentRunId``) named ``r<round>-t<trial>``: its hyperparameters
(params), round, trial, lane, status, bracket and parent trial (tags), its
validation accuracy and loss (metrics; none when it diverged), and its
training loss per epoch (metric ``epoch_loss``, step = epoch).

The store defaults to ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
in the working directory: a local file, no server (``mlflow ui`` opens it).
A run directory's parent run is found again by its path (tag
``vmaptune.run_key``), so exporting twice or resuming a logged run records
each trial once. Each trial costs three store writes (create, one batch,
terminate).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from vmaptune.distributions import describe_values
from vmaptune.rundir.files import flatten
from vmaptune.space import Space
from vmaptune.tracking.base import Tracker

DEFAULT_URI = "sqlite:///mlflow.db"
KEY_TAG = "vmaptune.run_key"
MAX_PARAM = 500  # MLflow's longest param value.


def _text(value: Any) -> str:
  text = value if isinstance(value, str) else json.dumps(value)
  return text if len(text) <= MAX_PARAM else text[:MAX_PARAM - 3] + "..."


def _number(value: Any) -> float | None:
  return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class MlflowTracker(Tracker):
  """Sends a run to MLflow (see the module).

  Args:
    tracking_uri: the store (default ``$MLFLOW_TRACKING_URI``, else
      ``sqlite:///mlflow.db``); an ``http://`` address for a server.
    experiment: the MLflow experiment the runs go to.
  """

  name = "mlflow"

  def __init__(self, tracking_uri: str | None = None, experiment: str = "vmaptune"):
    self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    self.client = MlflowClient(tracking_uri=self.tracking_uri)
    self.experiment = experiment
    self.run_id: str | None = None
    self._experiment_id: str | None = None
    self._logged: set[tuple[int, int]] = set()  # (round, trial) already nested runs.
    self._rounds: set[int] = set()  # Rounds whose figures the parent run holds.

  def _experiment_id_for(self) -> str:
    found = self.client.get_experiment_by_name(self.experiment)
    if found is not None:
      return found.experiment_id
    location = None
    if self.tracking_uri.startswith("sqlite:///"):  # Artifacts beside the database file.
      database = self.tracking_uri[len("sqlite:///"):]
      location = "file://" + os.path.join(os.path.dirname(os.path.abspath(database)),
                                          "mlartifacts")
    return self.client.create_experiment(self.experiment, artifact_location=location)

  def start(self, config: Mapping[str, Any], key: str | None = None) -> None:
    self._experiment_id = self._experiment_id_for()
    found = [] if key is None else self.client.search_runs(
        [self._experiment_id], f"tags.`{KEY_TAG}` = '{key.replace(chr(39), '')}'",
        max_results=1)
    if found:  # Logged before: an export run again, or a resumed run.
      self.run_id = found[0].info.run_id
      children = self.client.search_runs(
          [self._experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.run_id}'",
          max_results=50_000)
      self._logged = {(int(c.data.tags["vmaptune.round"]) - 1, int(c.data.tags["vmaptune.trial"]))
                      for c in children}
      self._rounds = {int(tag.split(".")[0][len("round_"):]) - 1
                      for tag in found[0].data.tags if tag.startswith("round_")}
      self.client.update_run(self.run_id, status="RUNNING")
      return
    name = (os.path.basename(key.rstrip(os.sep)) if key
            else time.strftime("vmaptune-%Y%m%d-%H%M%S"))
    tags = {MLFLOW_RUN_NAME: name, **({KEY_TAG: key} if key else {})}
    self.run_id = self.client.create_run(self._experiment_id, run_name=name,
                                         tags=tags).info.run_id
    settings = flatten(config.get("settings", {}), "settings")
    params = [Param(k, _text(v)) for k, v in settings.items() if k != "settings.rounds"]
    space = Space.from_dict(config["space"])
    params += [Param(f"space.{name}", _text(dist.describe())) for name, dist in space.items()]
    data = config.get("data", {})
    params += [Param(k, _text(v)) for k, v in flatten(
        {"model": config.get("model", {}).get("description"), "data": data.get("description"),
         "data_fingerprint": data.get("fingerprint")}, "").items() if v is not None]
    self.client.log_batch(self.run_id, params=params, tags=[
        RunTag("settings.rounds", str(config.get("settings", {}).get("rounds")))])
    self.client.log_dict(self.run_id, dict(config), "config.json")

  def log_round(self, entry: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
    index = int(entry["round"])
    for record in records:
      self._log_trial(record)
    if index in self._rounds:
      return
    now = int(time.time() * 1000)
    metrics = [Metric(name, value, now, index) for name, value in (
        ("best_val_accuracy", _number(entry.get("best_val_accuracy"))),
        ("median_val_accuracy", _number(entry.get("median_val_accuracy"))),
        ("lane_epochs", _number(entry.get("lane_epochs"))),
        ("trials_per_s", _number(entry.get("trials_per_s")))) if value is not None]
    ranges = Space.from_dict(entry["space"]) if "space" in entry else None
    tags = [] if ranges is None else [RunTag(f"round_{index + 1}.ranges", _text(", ".join(
        f"{name} {dist.describe()}" for name, dist in ranges.items())))]
    self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
    self.client.log_dict(self.run_id, dict(entry), f"rounds/round_{index + 1}.json")
    self._rounds.add(index)

  def _log_trial(self, record: Mapping[str, Any]) -> None:
    where = (int(record["round"]), int(record["trial"]))
    if where in self._logged:
      return
    name = f"r{where[0] + 1}-t{where[1]}"
    tags = {MLFLOW_PARENT_RUN_ID: self.run_id, "vmaptune.round": str(where[0] + 1),
            "vmaptune.trial": str(where[1]), "lane": str(record["lane"]),
            "status": str(record["status"]), "bracket": str(record["bracket"]),
            "parent_trial": str(record["parent"]), "kept": str(record["kept"])}
    child = self.client.create_run(self._experiment_id, run_name=name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(name, value, now, 0) for name, value in (
        ("val_accuracy", _number(record.get("val_accuracy"))),
        ("val_loss", _number(record.get("val_loss")))) if value is not None]
    start = int(record["start_epoch"])
    metrics += [Metric("epoch_loss", float(loss), now, start + i)
                for i, loss in enumerate(record["epoch_loss"]) if _number(loss) is not None]
    params = [Param(k, _text(v)) for k, v in record["hparams"].items()]
    self.client.log_batch(child, metrics=metrics, params=params)
    self.client.set_terminated(child, RunStatus.to_string(RunStatus.FINISHED))
    self._logged.add(where)

  def finish(self, summary: Mapping[str, Any], files: Mapping[str, str] | None = None) -> None:
    now = int(time.time() * 1000)
    chosen = summary.get("chosen") or {}
    tags = [RunTag(f"chosen.{k}", _text(v)) for k, v in chosen.get("hparams", {}).items()]
    if chosen:
      tags += [RunTag("chosen", f"round {chosen['round'] + 1}, trial {chosen['trial']}: "
                      + _text(describe_values(chosen["hparams"], sep="  ")))]
    figures = {"chosen_val_accuracy": chosen.get("val_accuracy")}
    confirmation = summary.get("confirmation") or {}
    figures.update({f"confirmation_{k}": confirmation.get(k) for k in ("mean", "sd", "optimism")})
    final = summary.get("final_fit") or {}
    figures.update({f"final_{k}": final.get(k) for k in ("val_accuracy", "val_loss",
                                                         "test_accuracy", "test_loss")})
    metrics = [Metric(k, float(v), now, 0) for k, v in figures.items()
               if _number(v) is not None]
    self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
    self.client.log_dict(self.run_id, dict(summary), "summary.json")
    for name, path in (files or {}).items():
      folder = os.path.dirname(name)
      self.client.log_artifact(self.run_id, path, artifact_path=folder or None)
    self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))
