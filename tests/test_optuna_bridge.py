"""The Optuna bridge: a study's sampler asks, one vmaptune population per batch trains,
the study is told the validation accuracies; no recompiles after the first batch."""

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN

optuna = pytest.importorskip("optuna", reason="the Optuna bridge needs optuna (the test extra)")
from optuna.trial import TrialState  # noqa: E402

from vmaptune import optuna_bridge  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = vt.Space(learning_rate=vt.LogUniform(1e-3, 3e-1), weight_decay=vt.LogUniform(1e-6, 1e-2))
TRAIN = dict(epochs=2, batch_size=32, seed=0, optimizer="adamw", schedule="constant")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(seed: int = 0) -> optuna.Study:
  return optuna.create_study(direction="maximize",
                             sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4))


def _optimize(study, data, **kwargs):
  with warnings.catch_warnings():  # An enqueued learning rate outside the range is meant.
    warnings.filterwarnings("ignore", message="Fixed parameter", category=UserWarning)
    return optuna_bridge.optimize(study, vt.models.MLP(hidden=(16,)), data, SPACE, **kwargs)


def test_tpe_batches_train_as_populations_and_are_told_their_scores(small_data):
  study = _study()
  study.enqueue_trial({"learning_rate": 1e30, "weight_decay": 1e-4})  # Diverges.
  with CompileCounter() as compiled:
    result = _optimize(study, small_data, batches=3, population=6, **TRAIN)
  trials = study.trials
  assert len(trials) == 18 and compiled.compiles > 0
  assert [r.compiles for r in result.rounds][1:] == [0, 0]  # One set of programs for all.
  assert trials[0].state == TrialState.PRUNED and trials[0].value is None
  assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 17  # The study went on.
  # Each batch, trained again here as a plain population, gives the values the study holds.
  pop = Population(vt.models.MLP(hidden=(16,)), BUILTIN["adamw"], small_data, epochs=2,
                      batch_size=32, eval_batch_size=1024)
  for batch, numbers in enumerate(result.numbers):
    asked = [trials[n] for n in numbers]
    assert [t.user_attrs["vmaptune_round"] for t in asked] == [batch] * 6
    assert [t.user_attrs["vmaptune_lane"] for t in asked] == list(range(6))
    hparams = {k: np.array([t.params[k] for t in asked], np.float32) for k in SPACE}
    out = pop.train(hparams, *round_keys(0, batch))
    scores = pop.evaluate(out.params)
    alive = ~np.asarray(out.diverged)[:6]
    told = np.array([np.nan if t.value is None else t.value for t in asked])
    np.testing.assert_array_equal(np.isnan(told), ~alive)
    np.testing.assert_allclose(told[alive], np.asarray(scores["accuracy"])[:6][alive], atol=1 / 120)
    np.testing.assert_allclose(result.rounds[batch].score, told, atol=0)
  assert study.best_value == result.best.score > 0.8
  chosen = result.optuna_trial(result.best)  # Ties may pick another trial than Optuna's.
  assert chosen.value == study.best_value
  assert chosen.params == pytest.approx(result.best.hparams, rel=1e-6)
  assert small_data.test_reads == 0  # The search never reads the test split.
  final = result.final_fit()
  assert abs(final.val_score - study.best_value) <= 1 / 120 and small_data.test_reads == 1


def test_a_fixed_sampler_seed_gives_the_same_study(small_data):
  runs = []
  for _ in range(2):
    study = _study(seed=3)
    _optimize(study, small_data, batches=2, population=4, **TRAIN)
    runs.append([(t.params, t.value, t.state) for t in study.trials])
  assert runs[0] == runs[1]


def test_a_continued_study_trains_new_batches_with_new_keys(small_data, capsys):
  study = _study()
  _optimize(study, small_data, batches=1, population=2, epochs=1, diverged="fail")
  study.enqueue_trial({"learning_rate": 1e30, "weight_decay": 1e-4})  # Diverges.
  second = _optimize(study, small_data, batches=1, population=2, epochs=1, diverged="fail",
                     verbose=True)
  assert second.rounds[0].index == 1
  assert "batch 1/1: 2 trials in" in capsys.readouterr().out
  assert [t.user_attrs["vmaptune_round"] for t in study.trials] == [0, 0, 1, 1]
  assert study.trials[2].state == TrialState.FAIL  # Diverged, told as asked.


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # QMCSampler.
def test_structural_parameters_are_trained_in_their_buckets(small_data):
  space = vt.Space(learning_rate=vt.LogUniform(1e-2, 2e-1), hidden=vt.Choice([8, 24]))
  study = optuna.create_study(direction="maximize",
                              sampler=optuna.samplers.QMCSampler(seed=0, scramble=True))
  result = optuna_bridge.optimize(study, lambda hidden: vt.models.MLP(hidden=(hidden,)),
                                  small_data, space, batches=2, population=6, epochs=1,
                                  batch_size=32)
  for batch, numbers in zip(result.rounds, result.numbers, strict=True):
    asked = [study.trials[n] for n in numbers]
    assert batch.hparams["hidden"].tolist() == [t.params["hidden"] for t in asked]
    np.testing.assert_array_equal(batch.score, [t.value for t in asked])
  assert {t.params["hidden"] for t in study.trials} == {8, 24}
  final = result.final_fit()  # Retrained alone in its bucket: the score it was told.
  assert final.model.hidden == (result.best.hparams["hidden"],)
  assert abs(final.val_score - study.best_value) <= 1 / 120


def test_spaces_convert_to_optuna_distributions():
  from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
  space = vt.Space(lr=vt.LogUniform(1e-4, 1e-1), momentum=vt.Uniform(0.5, 0.99),
                   steps=vt.IntUniform(1, 64, log=True), depth=vt.IntUniform(1, 3, structural=True),
                   act=vt.Choice(["relu", "tanh"]))
  assert optuna_bridge.distributions(space) == {
      "lr": FloatDistribution(1e-4, 1e-1, log=True), "momentum": FloatDistribution(0.5, 0.99),
      "steps": IntDistribution(1, 64, log=True), "depth": IntDistribution(1, 3),
      "act": CategoricalDistribution(["relu", "tanh"])}


@pytest.mark.parametrize("study, space, kwargs, message", [
    (optuna.create_study(), SPACE, {}, r"study directions \['minimize'\]; expected one "
                                       r"direction, 'maximize'"),
    ("study", SPACE, {}, r"study='study'; expected an optuna.Study"),
    (None, vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1), hidden=vt.Choice([(8,), (16,)])),
     {}, r"parameter 'hidden': Choice value \(8,\) cannot be an Optuna categorical choice"),
    (None, SPACE, {"rounds": 3}, r"unknown settings \['rounds'\]; expected some of"),
    (None, SPACE, {"batches": 0}, r"batches=0; expected a whole number >= 1"),
    (None, SPACE, {"diverged": "nan"}, r"diverged='nan'; expected one of \['pruned', 'fail'\]"),
    (None, SPACE, {"batch_size": 10_000}, r"batch_size=10000; expected a whole number"),
])
def test_bad_input_is_refused_before_asking_or_compiling(study, space, kwargs, message,
                                                         small_data):
  study = _study() if study is None else study
  settings = {"batches": 1, "population": 4, **kwargs}
  with CompileCounter() as compiled, pytest.raises(ValueError, match=message):
    optuna_bridge.optimize(study, vt.models.MLP(hidden=(16,)), small_data, space, **settings)
  assert compiled.compiles == 0
  if isinstance(study, optuna.Study):
    assert study.trials == []


@pytest.mark.slow  # A subprocess.
def test_without_optuna_the_bridge_says_how_to_install_it():
  code = ("import sys; sys.modules['optuna'] = None\n"
          "import vmaptune as vt\n"
          "try:\n  vt.optuna_bridge\nexcept ImportError as e:\n  print(e)\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
  assert out.returncode == 0, out.stderr
  assert "pip install 'vmaptune[optuna]'" in out.stdout


def _regression_data() -> vt.Dataset:
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 4)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5, 0.0])).astype(np.float32)
  return vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0)


def test_a_regression_study_minimises_the_mse_and_a_maximising_one_is_refused():
  data, model = _regression_data(), vt.models.MLP(hidden=(8,), num_classes=1)
  settings = dict(batches=2, population=4, epochs=1, batch_size=32, objective="regression")
  with CompileCounter() as compiled, pytest.raises(ValueError, match=re.escape(
      "study directions ['maximize']; expected one direction, 'minimize': each trial is told "
      "its validation mse")):
    optuna_bridge.optimize(_study(), model, data, SPACE, **settings)
  assert compiled.compiles == 0
  study = optuna.create_study(direction="minimize",
                              sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4))
  result = optuna_bridge.optimize(study, model, data, SPACE, **settings)
  for batch, numbers in zip(result.rounds, result.numbers, strict=True):
    asked = [study.trials[n] for n in numbers]
    np.testing.assert_array_equal(batch.score, [t.value for t in asked])  # The mse, told.
    assert [t.user_attrs["val_mae"] for t in asked] == pytest.approx(batch.metrics["mae"])
  assert study.best_value == result.best.score == min(t.value for t in study.trials)
  sampler = vt.samplers.Optuna(sampler="random")  # A study of its own, in the mse's direction.
  vt.tune(model, data, SPACE, sampler=sampler, objective="regression", population=4, rounds=1,
          epochs=1, batch_size=32, confirm="off")
  assert sampler.active_study.direction == optuna.study.StudyDirection.MINIMIZE
