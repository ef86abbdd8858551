"""The Optuna sampler end to end, through ``vt.tune(..., sampler=vt.samplers.Optuna(study))``:
a study's sampler asks, each round trains as one population, the study is told each
trial's validation score (a diverged one pruned or failed); no recompiles after the first
round; structural parameters train in their buckets; a regression study minimises the mse;
what the sampler cannot do is refused before the study is asked or anything compiles.
(tests/test_samplers.py has the sampler's other tests: early-stopping strategies, resume,
config files, directions told at the sampler's level.)"""

import sys
import warnings

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN

optuna = pytest.importorskip("optuna", reason="the Optuna sampler needs optuna (the test extra)")
from optuna.trial import TrialState  # noqa: E402

from vmaptune.samplers.optuna import INSTALL, distributions  # noqa: E402

SPACE = vt.Space(learning_rate=vt.LogUniform(1e-3, 3e-1), weight_decay=vt.LogUniform(1e-6, 1e-2))
# The rounds alone, as the study sees them: the confirmation stage tells the study nothing.
TRAIN = dict(epochs=2, batch_size=32, seed=0, optimizer="adamw", schedule="constant",
             confirm="off")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(seed: int = 0, direction: str = "maximize") -> optuna.Study:
  return optuna.create_study(direction=direction,
                             sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4))


def _tune(study, data, model=None, space=SPACE, **settings) -> tuple[vt.TuneResult, object]:
  sampler = vt.samplers.Optuna(study, diverged=settings.pop("diverged", "pruned"))
  with warnings.catch_warnings():  # An enqueued learning rate outside the range is meant.
    warnings.filterwarnings("ignore", message="Fixed parameter", category=UserWarning)
    result = vt.tune(model or vt.models.MLP(hidden=(16,)), data, space, sampler=sampler,
                     **settings)
  return result, sampler


def test_tpe_rounds_train_as_populations_and_are_told_their_scores(small_data):
  study = _study()
  study.enqueue_trial({"learning_rate": 1e30, "weight_decay": 1e-4})  # Diverges.
  with CompileCounter() as compiled:
    result, sampler = _tune(study, small_data, population=6, rounds=3, **TRAIN)
  trials = study.trials
  assert len(trials) == 18 and compiled.compiles > 0
  assert [r.compiles for r in result.rounds][1:] == [0, 0]  # One set of programs for all.
  assert trials[0].state == TrialState.PRUNED and trials[0].value is None
  assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 17  # The study went on.
  # Each round, trained again here as a plain population, gives the values the study holds.
  pop = Population(vt.models.MLP(hidden=(16,)), BUILTIN["adamw"], small_data, epochs=2,
                   batch_size=32, eval_batch_size=1024)
  assert len(sampler.numbers) == 3
  for index, numbers in enumerate(sampler.numbers):
    asked = [trials[n] for n in numbers]
    assert [t.user_attrs["vmaptune_round"] for t in asked] == [index] * 6
    assert [t.user_attrs["vmaptune_lane"] for t in asked] == list(range(6))
    hparams = {k: np.array([t.params[k] for t in asked], np.float32) for k in SPACE}
    out = pop.train(hparams, *round_keys(0, index))
    scores = pop.evaluate(out.params)
    alive = ~np.asarray(out.diverged)[:6]
    told = np.array([np.nan if t.value is None else t.value for t in asked])
    np.testing.assert_array_equal(np.isnan(told), ~alive)
    np.testing.assert_allclose(told[alive], np.asarray(scores["accuracy"])[:6][alive], atol=1 / 120)
    np.testing.assert_allclose(result.rounds[index].score, told, atol=0)
  assert study.best_value == result.best.score > 0.8
  # The study's record of the chosen trial (ties may pick another trial than Optuna's).
  chosen = trials[int(sampler.numbers[result.best.round][result.best.trial])]
  assert chosen.value == study.best_value
  assert chosen.params == pytest.approx(result.best.hparams, rel=1e-6)
  assert small_data.test_reads == 0  # The search never reads the test split.
  final = result.final_fit()
  assert abs(final.val_score - study.best_value) <= 1 / 120 and small_data.test_reads == 1


def test_a_study_given_to_a_second_run_is_continued_and_a_diverged_trial_can_be_failed(
    small_data):
  study = _study()
  settings = dict(TRAIN, population=2, rounds=1, epochs=1, diverged="fail")
  _tune(study, small_data, **settings)
  study.enqueue_trial({"learning_rate": 1e30, "weight_decay": 1e-4})  # Diverges.
  _tune(study, small_data, **settings)
  assert len(study.trials) == 4  # The second run's trials follow the first's,
  # its rounds counted from 0 again (a run's keys come from its seed and round).
  assert [t.user_attrs["vmaptune_round"] for t in study.trials] == [0, 0, 0, 0]
  assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [
      TrialState.FAIL, TrialState.COMPLETE]  # Diverged, told as asked.


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # QMCSampler.
def test_structural_parameters_are_trained_in_their_buckets(small_data):
  space = vt.Space(learning_rate=vt.LogUniform(1e-2, 2e-1), hidden=vt.Choice([8, 24]))
  study = optuna.create_study(direction="maximize",
                              sampler=optuna.samplers.QMCSampler(seed=0, scramble=True))
  result, sampler = _tune(study, small_data, lambda hidden: vt.models.MLP(hidden=(hidden,)),
                          space, population=6, rounds=2, epochs=1, batch_size=32,
                          confirm="off")
  assert len(result.rounds) == 2
  for r, numbers in zip(result.rounds, sampler.numbers, strict=True):
    asked = [study.trials[n] for n in numbers]
    assert r.hparams["hidden"].tolist() == [t.params["hidden"] for t in asked]
    np.testing.assert_array_equal(r.score, [t.value for t in asked])
  assert {t.params["hidden"] for t in study.trials} == {8, 24}
  final = result.final_fit()  # Retrained alone in its bucket: the score it was told.
  assert final.model.hidden == (result.best.hparams["hidden"],)
  assert abs(final.val_score - study.best_value) <= 1 / 120


def test_a_regression_study_minimises_the_mse_and_is_told_it():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 4)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5, 0.0])).astype(np.float32)
  data = vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0)
  study = _study(direction="minimize")
  result, sampler = _tune(study, data, vt.models.MLP(hidden=(8,), num_classes=1),
                          population=4, rounds=2, epochs=1, batch_size=32,
                          objective="regression", confirm="off")
  for r, numbers in zip(result.rounds, sampler.numbers, strict=True):
    asked = [study.trials[n] for n in numbers]
    np.testing.assert_array_equal(r.score, [t.value for t in asked])  # The mse, told.
    assert [t.user_attrs["val_mae"] for t in asked] == pytest.approx(r.metrics["mae"])
  assert study.best_value == result.best.score == min(t.value for t in study.trials)


def test_spaces_convert_to_optuna_distributions():
  from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
  space = vt.Space(lr=vt.LogUniform(1e-4, 1e-1), momentum=vt.Uniform(0.5, 0.99),
                   steps=vt.IntUniform(1, 64, log=True), depth=vt.IntUniform(1, 3, structural=True),
                   act=vt.Choice(["relu", "tanh"]))
  assert distributions(space) == {
      "lr": FloatDistribution(1e-4, 1e-1, log=True), "momentum": FloatDistribution(0.5, 0.99),
      "steps": IntDistribution(1, 64, log=True), "depth": IntDistribution(1, 3),
      "act": CategoricalDistribution(["relu", "tanh"])}


@pytest.mark.parametrize("study, space, settings, message", [
    (optuna.create_study(), SPACE, {},
     r"study directions \['minimize'\]; expected one direction, 'maximize': each trial is "
     r"told its validation accuracy"),
    ("study", SPACE, {}, r"study='study'; expected an optuna.Study"),
    (None, vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1), hidden=vt.Choice([(8,), (16,)])),
     {}, r"parameter 'hidden': Choice value \(8,\) cannot be an Optuna categorical choice"),
    (None, SPACE, {"diverged": "nan"}, r"diverged='nan'; expected one of \['pruned', 'fail'\]"),
    (None, SPACE, {"batch_size": 10_000}, r"batch_size=10000; expected"),
    (None, SPACE, {"objective": "regression"},
     r"study directions \['maximize'\]; expected one direction, 'minimize': each trial is "
     r"told its validation mse"),
])
def test_bad_input_is_refused_before_asking_or_compiling(study, space, settings, message,
                                                         small_data, refused_before_compiling):
  study = _study() if study is None else study
  sampler = vt.samplers.Optuna(study, diverged=settings.pop("diverged", "pruned"))
  model = vt.models.MLP(hidden=(16,), num_classes=1 if "objective" in settings else 10)
  refused_before_compiling(vt.SettingsError, message, model=model, data=small_data, space=space,
                           sampler=sampler, population=4, rounds=1, epochs=1,
                           **{"batch_size": 32, **settings})
  if isinstance(study, optuna.Study):
    assert study.trials == []


def test_without_optuna_the_sampler_says_how_to_install_it(small_data, monkeypatch,
                                                           refused_before_compiling):
  monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError.
  assert "pip install 'vmaptune[optuna]'" in INSTALL
  for sampler in (vt.samplers.Optuna(), "optuna"):
    refused_before_compiling(ImportError, r"pip install 'vmaptune\[optuna\]'",
                             model=vt.models.MLP(hidden=(16,)), data=small_data, space=SPACE,
                             sampler=sampler, population=4, rounds=1, epochs=1, batch_size=32)
