"""MLflow: one parent run per vmaptune run, one nested run per trial.

Metrics are named after the objective's (the config's ``scoring``:
classification's accuracy and loss, regression's mse and mae, ...). The parent
run holds the settings and the space (params), each round's ranges (tags
``round_<i>.ranges`` and ``rounds/round_<i>.json``), the rounds' best and
median ranking metric (metrics ``best_val_<metric>``, ``median_val_<metric>``,
e.g. ``best_val_accuracy``; step = round), the chosen configuration (tags
``chosen.<name>``, metric ``chosen_val_<metric>`` of the ranking one), the
confirmation and the final fit's figures (metrics ``final_val_<m>`` and
``final_test_<m>`` for every metric), the summary and the attached files
(artifacts: figures, best parameters). Each trial is a nested run (tag
``mlflow.parentRunId``) named ``r<round>-t<trial>``: its hyperparameters
(params), round, trial, lane, status, bracket and parent trial (tags), every
validation metric (``val_<metric>``, e.g. ``val_accuracy`` and ``val_loss``;
none when it diverged), and its training loss per epoch (metric
``epoch_loss``, step = epoch).

The store defaults to ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
in the working directory: a local file, no server (``mlflow ui`` opens it).
A run directory's parent run is found again by its path's SHA-256 (tag
``vmaptune.run_key``; any character a path holds matches), so exporting twice
or resuming a logged run records each trial once; a nested run cut short
(not FINISHED) is written again. The parent ends FINISHED once every round
is told, FAILED (KILLED for Ctrl-C) when the run stops early, and stays
RUNNING for an export of a run that goes on. Each trial costs three store
writes (create, one batch, terminate).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from vmaptune.errors import SettingsError
from vmaptune.reporting.tracking.base import Tracker
from vmaptune.rundir.files import flatten
from vmaptune.rundir.records import RoundEntry, Summary, TrialRecord
from vmaptune.space.distributions import describe_values
from vmaptune.space.space import Space
from vmaptune.trials.scoring import Scoring

DEFAULT_URI = "sqlite:///mlflow.db"
KEY_TAG = "vmaptune.run_key"  # SHA-256 of the run directory's absolute path.
MAX_PARAM = 6000  # MLflow 3's longest param value.


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
    self.scoring: Scoring | None = None  # The run's, once started.

  def _experiment_id_for(self) -> str:
    found = self.client.get_experiment_by_name(self.experiment)
    if found is not None and found.lifecycle_stage == "deleted":
      raise SettingsError(f"MLflow experiment {self.experiment!r} at {self.tracking_uri} was "
                          "deleted; restore it (mlflow experiments restore) or choose another "
                          "experiment name")
    if found is not None:
      return found.experiment_id
    location = None
    if self.tracking_uri.startswith("sqlite:///"):  # Artifacts beside the database file.
      database = self.tracking_uri[len("sqlite:///"):]
      location = "file://" + os.path.join(os.path.dirname(os.path.abspath(database)),
                                          "mlartifacts")
    return self.client.create_experiment(self.experiment, artifact_location=location)

  def _children(self) -> list:
    """Every nested run of the parent run, page by page."""
    children, token = [], None
    while True:
      page = self.client.search_runs(
          [self._experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.run_id}'",
          max_results=10_000, page_token=token)
      children += list(page)
      token = page.token
      if not token:
        return children

  def start(self, config: Mapping[str, Any], key: str | None = None) -> None:
    self.scoring = Scoring.from_dict(config.get("scoring"))
    self._experiment_id = self._experiment_id_for()
    # Found by a digest of the path: any character a path may hold matches.
    digest = None if key is None else hashlib.sha256(key.encode()).hexdigest()
    found = [] if key is None else self.client.search_runs(
        [self._experiment_id], f"tags.`{KEY_TAG}` = '{digest}'", max_results=1)
    rounds = str(config.get("settings", {}).get("rounds"))
    if found:  # Logged before: an export run again, or a resumed run.
      self.run_id = found[0].info.run_id
      for child in self._children():
        where = (int(child.data.tags["vmaptune.round"]) - 1, int(child.data.tags["vmaptune.trial"]))
        if child.info.status == "FINISHED":
          self._logged.add(where)
        else:  # Cut short (the run stopped while it was written): written again.
          self.client.delete_run(child.info.run_id)
      self._rounds = {int(tag.split(".")[0][len("round_"):]) - 1
                      for tag in found[0].data.tags if tag.startswith("round_")}
      self.client.set_tag(self.run_id, "settings.rounds", rounds)  # May have been raised.
      self.client.update_run(self.run_id, status="RUNNING")
      return
    name = (os.path.basename(key.rstrip(os.sep)) if key
            else time.strftime("vmaptune-%Y%m%d-%H%M%S"))
    tags = {MLFLOW_RUN_NAME: name, **({KEY_TAG: digest, "vmaptune.run_dir": key} if key else {})}
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
    self.client.log_batch(self.run_id, params=params, tags=[RunTag("settings.rounds", rounds)])
    self.client.log_dict(self.run_id, dict(config), "config.json")

  def log_round(self, entry: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
    round_entry = RoundEntry.from_json(dict(entry), self.scoring, complete=False)
    index = round_entry.round
    for record in records:
      self._log_trial(TrialRecord.from_json(dict(record), self.scoring))
    if index in self._rounds:
      return
    now = int(time.time() * 1000)
    metrics = [Metric(name, value, now, index) for name, value in (
        (self.scoring.best_field, _number(round_entry.best)),
        (self.scoring.median_field, _number(round_entry.median)),
        ("lane_epochs", _number(round_entry.lane_epochs)),
        ("trials_per_s", _number(round_entry.trials_per_s))) if value is not None]
    ranges = None if round_entry.space is None else Space.from_dict(round_entry.space)
    tags = [] if ranges is None else [RunTag(f"round_{index + 1}.ranges", _text(", ".join(
        f"{name} {dist.describe()}" for name, dist in ranges.items())))]
    self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
    self.client.log_dict(self.run_id, dict(entry), f"rounds/round_{index + 1}.json")
    self._rounds.add(index)

  def _log_trial(self, record: TrialRecord) -> None:
    where = (record.round, record.trial)
    if where in self._logged:
      return
    name = f"r{where[0] + 1}-t{where[1]}"
    tags = {MLFLOW_PARENT_RUN_ID: self.run_id, "vmaptune.round": str(where[0] + 1),
            "vmaptune.trial": str(where[1]), "lane": str(record.lane),
            "status": str(record.status), "bracket": str(record.bracket),
            "parent_trial": str(record.parent), "kept": str(record.kept)}
    child = self.client.create_run(self._experiment_id, run_name=name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(self.scoring.field(metric), value, now, 0) for metric, value in (
        (metric, _number(record.metrics[metric])) for metric in self.scoring.names)
        if value is not None]
    start = record.start_epoch
    metrics += [Metric("epoch_loss", float(loss), now, start + i)
                for i, loss in enumerate(record.epoch_loss or ()) if _number(loss) is not None]
    params = [Param(k, _text(v)) for k, v in record.hparams.items()]
    self.client.log_batch(child, metrics=metrics, params=params)
    self.client.set_terminated(child, RunStatus.to_string(RunStatus.FINISHED))
    self._logged.add(where)

  def finish(self, summary: Mapping[str, Any], files: Mapping[str, str] | None = None) -> None:
    now = int(time.time() * 1000)
    record = Summary.from_json(dict(summary), self.scoring)
    chosen, scoring = record.chosen, self.scoring
    tags = [] if chosen is None else [RunTag(f"chosen.{k}", _text(v))
                                      for k, v in chosen.hparams.items()]
    if chosen:
      tags += [RunTag("chosen", f"round {chosen.round + 1}, trial {chosen.trial}: "
                      + _text(describe_values(chosen.hparams, sep="  ")))]
    figures = {f"chosen_{scoring.field(scoring.rank_by)}": None if chosen is None
               else chosen.score}
    confirmation = record.confirmation
    figures.update({f"confirmation_{k}": None if confirmation is None
                    else getattr(confirmation, k) for k in ("mean", "sd", "optimism")})
    final = record.final_fit
    if final is not None:  # Classification: final_val_accuracy, ..., final_test_loss.
      figures.update({f"final_{scoring.field(m)}": final.val[m] for m in scoring.names})
      figures.update({f"final_{scoring.test_field(m)}": final.test[m] for m in scoring.names})
    logged = self.client.get_run(self.run_id).data.metrics
    metrics = [Metric(k, float(v), now, 0) for k, v in figures.items()
               if _number(v) is not None and logged.get(k) != float(v)]  # Only what changed.
    self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
    self.client.log_dict(self.run_id, dict(summary), "summary.json")
    for name, path in (files or {}).items():
      folder = os.path.dirname(name)
      self.client.log_artifact(self.run_id, path, artifact_path=folder or None)
    rounds = (record.settings or {}).get("rounds")
    if record.error:
      self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FAILED))
    elif rounds is not None and len(record.rounds) >= rounds:
      self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))
    # Otherwise the run is still going (an export of a running run): it stays RUNNING.

  def stop(self, status: str) -> None:
    """The run stopped early (``"FAILED"``, or ``"KILLED"`` for Ctrl-C)."""
    if self.run_id is not None:
      self.client.set_terminated(self.run_id, status)
