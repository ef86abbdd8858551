"""Samplers: which configurations each round tries. The narrow sampler (deterministic
draws per round, bucket and stream; the top trials kept, every range shrunk to their span)
and the Optuna sampler (a study proposes, vmaptune trains, the study is told each outcome),
chosen by name or as objects, from scripts and config files."""

import dataclasses
import json
import re

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.cli import main
from vmaptune.samplers import SAMPLERS, Narrow, parse
from vmaptune.space.structural import Bucket
from vmaptune.strategies import parse as parse_strategy
from vmaptune.trials.ranking import rank
from vmaptune.trials.scoring import CLASSIFICATION
from vmaptune.trials.table import TrialTable

SPACE = vt.Space(learning_rate=vt.LogUniform(1e-3, 3e-1), weight_decay=vt.LogUniform(1e-6, 1e-2))
PLAIN = Bucket(index=None, values={}, model=None, batch_size=32)
TRAIN = dict(epochs=1, batch_size=32, seed=0, schedule="constant")
# The confirmation stage after the last round trains lanes of its own and tells no sampler: the
# runs here go without it (confirm="off"), but for one tune that keeps it (the default), whose
# study is compared with that of the same run without it: it tells the study nothing.
OFF = dict(TRAIN, confirm="off")


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_is_chosen_by_name_and_described_as_configs_write_it(name):
  sampler = parse(name)
  assert type(sampler) is SAMPLERS[name] and parse(sampler) is sampler
  assert sampler.describe().startswith(f"{name}(")
  assert parse(sampler.describe()).describe() == sampler.describe()  # Configs read it back.
  with pytest.raises(ValueError, match=f"sampler {name!r} has no setting"):
    parse(f"{name}(bogus=1)")


def test_narrow_draws_rounds_buckets_and_streams_apart_and_the_same_for_the_same_seed():
  sampler = Narrow()
  sampler.start(SPACE, seed=3, scoring=CLASSIFICATION)
  draw = lambda **where: sampler.ask(6, **{"round_index": 1, "bucket": PLAIN, **where})
  first = draw()
  for name in SPACE:
    np.testing.assert_array_equal(first[name], draw()[name])
    np.testing.assert_array_equal(first[name], SPACE.sample(3, 1, 6)[name])
    assert first[name].dtype == np.float32
    assert (first[name] >= SPACE[name].low).all() and (first[name] <= SPACE[name].high).all()
    for other in (draw(stream=1), draw(round_index=2),
                  draw(bucket=Bucket(index=0, values={}, model=None, batch_size=32))):
      assert not np.array_equal(first[name], other[name])


def _table(values: dict[str, np.ndarray], accuracy: np.ndarray) -> TrialTable:
  count = len(accuracy)
  diverged = np.isnan(accuracy)
  return TrialTable(
      hparams={k: np.asarray(v, np.float32) for k, v in values.items()},
      round=np.zeros(count, np.int64), trial=np.arange(count), lane=np.arange(count),
      bracket=np.full(count, -1), start_epoch=np.zeros(count, np.int64),
      epochs=np.ones(count, np.int64), parent=np.full(count, -1),
      status=np.where(diverged, "diverged", "finished").astype(object),
      metrics={"accuracy": accuracy, "loss": np.where(diverged, np.nan, 1 - accuracy)},
      epoch_loss=np.ones((count, 1), np.float32), scoring=CLASSIFICATION)


def test_narrow_keeps_the_top_fraction_and_shrinks_every_range_to_their_span():
  sampler = Narrow(keep=0.25, margin=0.1)
  sampler.start(SPACE, seed=0, scoring=CLASSIFICATION)
  values = SPACE.sample(0, 0, 8)
  accuracy = np.array([0.5, 0.9, np.nan, 0.7, 0.95, 0.2, 0.6, 0.1])
  told = sampler.tell(_table(values, accuracy), round_index=0)
  assert told.kept.tolist() == [4, 1]  # ceil(0.25 * 8) best; the diverged trial never.
  expected = SPACE.narrow({k: v[[4, 1]] for k, v in values.items()}, 0.1, SPACE)
  assert told.next_space == expected == sampler.ranges
  # A round in which every trial diverged keeps nothing and narrows nothing.
  nothing = sampler.tell(_table(values, np.full(8, np.nan)), round_index=1)
  assert len(nothing.kept) == 0 and nothing.next_space == expected
  sampler.start(SPACE, seed=0, scoring=CLASSIFICATION)  # A new run forgets what it learned.
  assert sampler.ranges == SPACE


def test_a_sampler_object_reused_by_a_second_run_starts_afresh(small_data, tiny_mlp):
  sampler = Narrow(keep=0.5)
  settings = dict(population=4, rounds=2, sampler=sampler, **OFF)
  first = vt.tune(tiny_mlp, small_data, SPACE, **settings)
  second = vt.tune(tiny_mlp, small_data, SPACE, **settings)
  assert [t.to_record() for t in first.trials()] == [t.to_record() for t in second.trials()]
  assert second.settings["sampler"] == "narrow(keep=0.5, margin=0.1)"


optuna = pytest.importorskip("optuna", reason="the Optuna sampler needs optuna (the test extra)")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(seed: int = 0):
  return optuna.create_study(direction="maximize",
                             sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4))


def test_tune_with_an_optuna_study_records_its_rounds_and_confirming_tells_the_study_nothing(
    small_data, tiny_mlp, tmp_path):
  study = _study()
  result = vt.tune(tiny_mlp, small_data, SPACE, sampler=vt.samplers.Optuna(study),
                   population=4, rounds=2, out=str(tmp_path / "run"), **TRAIN)
  assert result.confirmation is not None  # The default: the top trials confirmed.
  # The same run without the confirmation stage, on a study of the same seed: the same trials
  # asked and told (the same seed, the same study), the same records.
  unconfirmed_study = _study()
  unconfirmed = vt.tune(tiny_mlp, small_data, SPACE,
                        sampler=vt.samplers.Optuna(unconfirmed_study), population=4, rounds=2,
                        **OFF)
  records = [t.to_record() for t in result.trials()]
  assert records == [t.to_record() for t in unconfirmed.trials()]
  assert records == vt.read_trials(tmp_path / "run")
  assert [(t.params, t.value, t.state) for t in study.trials] == \
      [(t.params, t.value, t.state) for t in unconfirmed_study.trials]
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  assert config["settings"]["sampler"] == "optuna(sampler='tpe', diverged='pruned')"
  assert [t.user_attrs["vmaptune_round"] for t in study.trials] == [0] * 4 + [1] * 4
  assert small_data.test_reads == 0


def test_trials_a_strategy_stops_early_are_told_pruned_at_the_epoch_they_reached(small_data,
                                                                                tiny_mlp):
  study = _study()
  sampler = vt.samplers.Optuna(study)
  result = vt.tune(tiny_mlp, small_data, SPACE, sampler=sampler, strategy="halving(eta=2)",
                   population=4, rounds=1, **{**OFF, "epochs": 2})
  r = result.rounds[0]
  told = [study.trials[number] for number in sampler.numbers[0]]
  assert [t.params for t in told] == [
      {name: pytest.approx(float(r.hparams[name][row]), rel=1e-6) for name in SPACE}
      for row in np.flatnonzero(r.is_configuration)]
  states = set()
  for row, trial in zip(np.flatnonzero(r.is_configuration), told, strict=True):
    states.add(trial.state)
    if r.status[row] == "finished":
      assert trial.state == optuna.trial.TrialState.COMPLETE
      assert trial.value == r.score[row]
    else:
      assert r.status[row] == "halved" and trial.state == optuna.trial.TrialState.PRUNED
      assert trial.intermediate_values == {1: r.score[row]}
  assert states == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
  assert r.kept.tolist() == rank(r)[:1].tolist()  # The round's best, nothing narrowed.


def test_a_config_file_chooses_the_optuna_sampler_by_name(experiment_file, tmp_path):
  out = tmp_path / "run"
  assert main(["run", experiment_file, "--quiet", "--no-cache", "--set", "rounds=1",
               "sampler=optuna(sampler='random')", "confirm=off", "--out", str(out)]) == 0
  config = json.loads((out / "config.json").read_text())
  assert config["settings"]["sampler"] == "optuna(sampler='random', diverged='pruned')"
  assert len(vt.read_trials(out)) == 8


def test_a_resumed_run_tells_its_restored_rounds_to_a_new_study(small_data, tiny_mlp, tmp_path):
  """The restored rounds are added to the new study, values at a range's bound included
  (recorded as float32, an ulp past it); later rounds continue that study, which is not
  the uninterrupted run's: the study's sampler state is not in the run directory."""
  out = str(tmp_path / "run")
  first_study = _study()
  first_study.enqueue_trial({"learning_rate": 3e-1, "weight_decay": 1e-6})  # Both bounds.
  vt.tune(tiny_mlp, small_data, SPACE, sampler=vt.samplers.Optuna(first_study), population=4,
          rounds=1, out=out, **OFF)
  study = _study()
  result = vt.tune(tiny_mlp, small_data, SPACE, sampler=vt.samplers.Optuna(study),
                   population=4, rounds=2, out=out, **OFF)
  assert [t.user_attrs["vmaptune_round"] for t in study.trials] == [0] * 4 + [1] * 4
  first = result.rounds[0]
  assert [t.value for t in study.trials[:4]] == first.score.tolist()
  assert [t.params["learning_rate"] for t in study.trials[:4]] == \
      pytest.approx(first.hparams["learning_rate"].tolist(), rel=1e-6)
  assert len(vt.read_trials(out)) == 8


@pytest.mark.parametrize("change, message", [
    (dict(strategy="halving(eta=2)"), "use strategy 'random' with structural parameters"),
    (dict(sampler=vt.samplers.Optuna(optuna.create_study(direction="maximize"),
                                     sampler="random")), "give one or the other"),
    (dict(sampler="optuna(sampler='annealing')"), r"sampler='annealing'; expected one of"),
])
def test_what_the_optuna_sampler_cannot_do_is_refused_before_asking(change, message, small_data,
                                                                     refused_before_compiling):
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1), hidden=vt.Choice([8, 16]))
  study = _study()
  settings = {"sampler": vt.samplers.Optuna(study), "population": 4, "rounds": 1, "epochs": 2,
              **change}
  refused_before_compiling(vt.SettingsError, message,
                           model=lambda hidden: vt.models.MLP(hidden=(hidden,)),
                           data=small_data, space=space, **settings)
  assert study.trials == []


def test_a_sampler_object_given_no_study_starts_a_new_study_each_run(small_data, tiny_mlp):
  sampler = vt.samplers.Optuna(sampler="random")
  vt.tune(tiny_mlp, small_data, SPACE, sampler=sampler, population=4, rounds=1, **OFF)
  first = sampler.active_study
  vt.tune(tiny_mlp, small_data, SPACE, sampler=sampler, population=4, rounds=1, **OFF)
  assert sampler.active_study is not first and len(sampler.active_study.trials) == 4
  assert sampler.study is None


def test_the_optuna_study_minimises_a_minimised_metric_and_is_told_it(handwritten_regression):
  from vmaptune.objectives import parse as parse_objective

  regression = parse_objective("regression").scoring
  sampler = vt.samplers.Optuna(sampler="random")
  sampler.start(SPACE, seed=0, scoring=regression)
  assert sampler.active_study.direction == optuna.study.StudyDirection.MINIMIZE
  asked = sampler.ask(4, round_index=0, bucket=PLAIN)
  mse = np.array([0.5, 0.25, np.nan, 2.0])
  told = sampler.tell(handwritten_regression(asked, mse), round_index=0)
  study = sampler.active_study
  assert [t.value for t in study.trials] == [0.5, 0.25, None, 2.0]
  assert [t.user_attrs.get("val_mae") for t in study.trials] == [0.25, 0.125, None, 1.0]
  assert "val_loss" not in study.trials[0].user_attrs
  assert study.best_value == 0.25 and told.kept.tolist() == [1]  # The lowest mse.
  classification = vt.samplers.Optuna(sampler="random")
  classification.start(SPACE, seed=0, scoring=CLASSIFICATION)  # Accuracy, maximised.
  assert classification.active_study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_a_study_in_the_wrong_direction_for_the_objective_is_refused(handwritten_regression):
  from vmaptune.objectives import parse as parse_objective

  regression = parse_objective("regression").scoring
  sampler = vt.samplers.Optuna(_study())  # Maximises: it would look for the worst mse.
  with pytest.raises(ValueError, match=re.escape(
      "study directions ['maximize']; expected one direction, 'minimize': each trial is told "
      "its validation mse (optuna.create_study(direction='minimize'))")):
    sampler.check(SPACE, parse_strategy("random"), regression)
  with pytest.raises(ValueError, match=re.escape("expected one direction, 'minimize'")):
    sampler.start(SPACE, 0, scoring=regression)
  minimizing = vt.samplers.Optuna(optuna.create_study(direction="minimize"))
  minimizing.check(SPACE, parse_strategy("random"), regression)
  with pytest.raises(ValueError, match=re.escape(
      "study directions ['minimize']; expected one direction, 'maximize': each trial is told "
      "its validation accuracy")):
    minimizing.check(SPACE, parse_strategy("random"), CLASSIFICATION)
  # Started for one objective and told another's trials: refused, not told the wrong way.
  minimizing.start(SPACE, 0, scoring=regression)
  asked = minimizing.ask(2, round_index=0, bucket=PLAIN)
  table = handwritten_regression(asked, np.array([0.5, 0.25]))
  accuracy = dataclasses.replace(table, scoring=CLASSIFICATION, metrics={
      "accuracy": table.metrics["mse"], "loss": table.metrics["mae"]})
  with pytest.raises(ValueError, match=re.escape("expected one direction, 'maximize'")):
    minimizing.tell(accuracy, round_index=0)
