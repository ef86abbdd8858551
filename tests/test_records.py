"""The run format's records (vmaptune.rundir.records): each round-trips through JSON,
keys in the files' order, and a damaged field is refused naming the field."""

import copy
import json
import os

import pytest

import vmaptune as vt
from vmaptune.errors import DamagedRunError
from vmaptune.rundir.records import (
  ConfirmationRecord,
  FinalFitRecord,
  ParamsPointer,
  RecordError,
  RoundEntry,
  Summary,
  TrialRecord,
)
from vmaptune.trials.scoring import CLASSIFICATION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMAT1 = os.path.join(ROOT, "tests", "data", "format1")
REGRESSION = vt.objectives.parse("regression").scoring


def _read(name, file):
  with open(os.path.join(FORMAT1, name, file)) as f:
    return [json.loads(line) for line in f] if file.endswith(".jsonl") else json.load(f)


def _same(record, value):
  """``record.to_json()`` is ``value``, key order included (the files' bytes depend on it)."""
  written = record.to_json()
  assert written == value
  assert json.dumps(written) == json.dumps(value)


CONFIRMATION = {
    "configurations": 2, "seeds": 2, "chosen": 1, "search_val_accuracy": 0.84, "mean": 0.80,
    "sd": 0.04, "optimism": 0.03, "lane_epochs": 8, "wall_s": 4.8, "rule": "mean",
    "candidates": [
        {"round": 0, "trial": 7, "hparams": {"learning_rate": 0.08}, "search_val_accuracy": 0.86,
         "mean": 0.75, "sd": 0.07, "seed_accuracy": [0.8, 0.7], "seed_loss": [0.6, None],
         "estimate": 0.83, "estimate_se": 0.01},
        {"round": 0, "trial": 0, "hparams": {"learning_rate": 0.03}, "search_val_accuracy": 0.84,
         "mean": 0.80, "sd": 0.04, "seed_accuracy": [0.8, 0.8], "seed_loss": [0.5, 0.5],
         "estimate": 0.82, "estimate_se": None}],
    "estimates": {"round": [0, 0, 0], "trial": [7, 0, 3], "mean": [0.83, 0.82, 0.6],
                  "stderr": [0.01, None, 0.02],
                  "groups": [{"values": {}, "reached": 2, "trials": 3, "fitted": 0,
                              "noise_sd": None}]}}
POINTER = {"from": "search", "round": 1, "trial": 0, "hparams": {"learning_rate": 0.03},
           "sha256": "ab" * 32}


@pytest.mark.parametrize("name", ["narrow", "halving_structural"])
def test_every_record_of_a_run_round_trips_in_the_files_key_order(name):
  scoring = CLASSIFICATION
  for line in _read(name, "trials.jsonl"):
    _same(TrialRecord.from_json(line, scoring), line)
  summary = _read(name, "summary.json")
  for entry in summary["rounds"]:  # halving_structural's hold buckets.
    _same(RoundEntry.from_json(entry, scoring), entry)
  _same(TrialRecord.from_json(summary["chosen"], scoring), summary["chosen"])
  if summary["final_fit"]:
    _same(FinalFitRecord.from_json(summary["final_fit"], scoring), summary["final_fit"])
  # Written before the confirmation and best_params existed: they read back as None, and
  # are written as null, in their place.
  order = ["chosen", "final_fit", "settings", "space", "rounds", "confirmation", "wall_s",
           "compile_s", "trace_s", "programs_compiled", "lane_epochs", "best_params"]
  _same(Summary.from_json(summary, scoring), {key: summary.get(key) for key in order})
  full = {**{key: summary.get(key) for key in order}, "confirmation": CONFIRMATION,
          "best_params": POINTER, "error": "stopped"}
  record = Summary.from_json(full, scoring, complete=True)
  _same(record, full)
  assert record.confirmation.candidates[0].seeds["loss"] == [0.6, None]
  assert record.best_params == ParamsPointer("search", 1, 0, {"learning_rate": 0.03}, "ab" * 32)


def test_records_of_a_regression_use_its_metric_names():
  chosen = {"round": 0, "trial": 2, "lane": 2, "bracket": -1, "hparams": {"learning_rate": 0.1},
            "start_epoch": 0, "epochs": 3, "val_mse": 0.3, "val_mae": 0.2, "status": "finished",
            "parent": -1, "kept": True, "seed_mse": [0.3, 0.31], "val_mse_std": 0.005,
            "epoch_loss": [1.0, 0.5, None]}
  trial = TrialRecord.from_json(chosen, REGRESSION)
  _same(trial, chosen)
  assert (trial.val_mse, trial.seed_mse, trial.score_std) == (0.3, [0.3, 0.31], 0.005)
  final = {"config": {"learning_rate": 0.1}, "round": 0, "trial": 2, "lane": 2,
           "schedule": [{"first_epoch": 0, "end_epoch": 3, "hparams": {"learning_rate": 0.1}}],
           "batch_size": 32, "search_val_mse": 0.3, "val_mse": 0.29, "val_mae": 0.2,
           "test_mse": 0.4, "test_mae": 0.25}
  record = FinalFitRecord.from_json(final, REGRESSION)
  _same(record, final)
  assert (record.val_score, record.test_score, record.schedule[0][:2]) == (0.29, 0.4, (0, 3))
  entry = {"round": 0, "trials": 3, "best_val_mse": 0.3, "median_val_mse": None, "wall_s": 1.0}
  parsed = RoundEntry.from_json(entry, REGRESSION, complete=False)
  assert (parsed.best, parsed.median, parsed.wall_s) == (0.3, None, 1.0)
  # The keys are composed by the scoring, once.
  assert (REGRESSION.best_field, REGRESSION.median_field, REGRESSION.search_field,
          REGRESSION.test_field("mae"), REGRESSION.seeds_field("mae"),
          REGRESSION.spread_field) == ("best_val_mse", "median_val_mse", "search_val_mse",
                                       "test_mae", "seed_mae", "val_mse_std")


def _damaged(value, path, new):
  """``value`` with the field at ``path`` (keys and indices) set to ``new`` (or removed)."""
  value = copy.deepcopy(value)
  *parents, last = path
  target = value
  for key in parents:
    target = target[key]
  if new is KeyError:
    del target[last]
  else:
    target[last] = new
  return value


TRIAL = _read("narrow", "trials.jsonl")[0]
SUMMARY = {**_read("narrow", "summary.json"), "confirmation": CONFIRMATION,
           "best_params": POINTER}


@pytest.mark.parametrize("read, value, message", [
    (TrialRecord, _damaged(TRIAL, ["epochs"], "3"), "'epochs' is str, expected int"),
    (TrialRecord, _damaged(TRIAL, ["kept"], 1), "'kept' is int, expected bool"),
    (TrialRecord, _damaged(TRIAL, ["round"], True), "'round' is True, expected int"),
    (TrialRecord, _damaged(TRIAL, ["val_loss"], KeyError), "no 'val_loss' field"),
    (TrialRecord, _damaged(TRIAL, ["epoch_loss", 1], "x"),
     "'epoch_loss[1]' is str, expected number or null"),
    (TrialRecord, [TRIAL], "a JSON list where an object was expected"),
    (Summary, _damaged(SUMMARY, ["rounds", 1, "wall_s"], "1s"),
     "'rounds[1].wall_s' is str, expected number"),
    (Summary, _damaged(SUMMARY, ["rounds", 1, "round"], 0), "'rounds[1].round' is 0, expected 1"),
    (Summary, _damaged(SUMMARY, ["rounds", 0, "next_space"], KeyError),
     "'rounds[0]' has no 'next_space' field"),
    (Summary, _damaged(SUMMARY, ["chosen", "hparams"], [0.1]),
     "'chosen.hparams' is list, expected dict"),
    (Summary, _damaged(SUMMARY, ["final_fit", "test_accuracy"], KeyError),
     "'final_fit' has no 'test_accuracy' field"),
    (Summary, _damaged(SUMMARY, ["confirmation", "candidates", 1, "round"], "0"),
     "'confirmation.candidates[1].round' is str, expected int"),
    (Summary, _damaged(SUMMARY, ["confirmation", "candidates", 0, "seed_loss"], 0.5),
     "'confirmation.candidates[0].seed_loss' is float, expected list"),
    (Summary, _damaged(SUMMARY, ["final_fit", "trained_in"], "gpu"),
     "'final_fit.trained_in' is 'gpu', expected one of ['alone', 'lanes']"),
    (Summary, _damaged(SUMMARY, ["confirmation", "rule"], "best"),
     "'confirmation.rule' is 'best', expected one of ['mean', 'lcb']"),
    (Summary, _damaged(SUMMARY, ["confirmation", "estimates", "trial", 2], 3.5),
     "'confirmation.estimates.trial[2]' is float, expected int"),
    (Summary, _damaged(SUMMARY, ["confirmation", "estimates", "stderr"], [0.1]),
     "'confirmation.estimates.stderr' has 1 values, expected 3 (as many as 'round')"),
    (Summary, _damaged(SUMMARY, ["confirmation", "estimates", "groups", 0, "fitted"], None),
     "'confirmation.estimates.groups[0].fitted' is NoneType, expected int"),
    (Summary, _damaged(SUMMARY, ["best_params", "sha256"], 12),
     "'best_params.sha256' is int, expected str"),
    (ConfirmationRecord, _damaged(CONFIRMATION, ["seeds"], 2.0), "'seeds' is float, expected int"),
    (ParamsPointer, _damaged(POINTER, ["from"], KeyError), "no 'from' field"),
])
def test_a_damaged_field_is_refused_naming_the_field(read, value, message):
  with pytest.raises(RecordError) as error:
    kwargs = {"complete": True} if read is Summary else {}
    read.from_json(value, CLASSIFICATION, **kwargs)
  assert str(error.value) == message


def test_a_run_directory_with_a_damaged_field_is_refused_naming_it(handwritten_run, tmp_path):
  """The damage checks validate through the records: a field of the wrong type in a trial
  record or in the summary's chosen trial is named with its line or part."""
  space = {"learning_rate": {"type": "LogUniform", "low": 1e-4, "high": 1.0}}
  rows = [{"hparams": {"learning_rate": 10 ** -i}, "acc": 0.5 + i / 10} for i in range(3)]
  path = str(tmp_path / "run")
  handwritten_run(path, space, rows)
  assert len(vt.load_run(path).trial_records) == 3
  trials = os.path.join(path, "trials.jsonl")
  with open(trials) as f:
    lines = f.readlines()
  record = json.loads(lines[1])
  record["epochs"] = "1"
  with open(trials, "w") as f:
    f.writelines([lines[0], json.dumps(record) + "\n", lines[2]])
  with pytest.raises(DamagedRunError, match=r"line 2 is not a trial record: 'epochs' is str, "
                                            "expected int. No round is intact"):
    vt.load_run(path)
  with open(trials, "w") as f:
    f.writelines(lines)
  summary_path = os.path.join(path, "summary.json")
  with open(summary_path) as f:
    summary = json.load(f)
  summary["chosen"] = {**json.loads(lines[2]), "start_epoch": None}
  vt.rundir.write_json(summary_path, summary)
  with pytest.raises(DamagedRunError,
                     match=r"summary.json is damaged: 'chosen.start_epoch' is NoneType, "
                           "expected int"):
    vt.load_run(path)
  summary["chosen"]["start_epoch"] = 0
  vt.rundir.write_json(summary_path, summary)
  run = vt.load_run(path)
  assert run.chosen_record == TrialRecord.from_json(json.loads(lines[2]), CLASSIFICATION)
  assert run.round_record(0).wall_s == 1.0 and run.final_fit_record is None
