"""The denoised estimate of each trial's expected score: it chooses better than the raw score
on known noisy functions, in either direction, bucket by bucket, leaving diverged trials out."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.gaussian_process import GaussianProcessRegressor

import vmaptune as vt
from vmaptune.errors import SettingsError
from vmaptune.trials.estimate import Estimates, estimate, fit_rows, order_by, surface
from vmaptune.trials.fields import RecordError
from vmaptune.trials.scoring import CLASSIFICATION, Scoring
from vmaptune.trials.table import TrialTable

SPACE = vt.Space(learning_rate=vt.LogUniform(1e-5, 1.0), weight_decay=vt.LogUniform(1e-8, 1e-1))
MSE = Scoring((("mse", "minimize"),), "mse")


def bowl(hparams: dict) -> np.ndarray:
  """0.95 at learning rate 10^-2.5 and weight decay 10^-4, a tilted quadratic bowl in
  their logs: 0.02 lower a decade of learning rate away."""
  x = np.log10(np.asarray(hparams["learning_rate"], np.float64)) + 2.5
  w = np.log10(np.asarray(hparams["weight_decay"], np.float64)) + 4.0
  return 0.95 - (0.02 * x**2 + 0.005 * x * w + 0.005 * w**2)


def table_of(hparams: dict, score: np.ndarray, scoring: Scoring = CLASSIFICATION, *,
             status=None, reached=None, parent=None) -> TrialTable:
  """One round's trials written by hand, scored ``score`` (the ranking metric)."""
  count = len(score)
  reached = np.ones(count, np.int64) if reached is None else np.asarray(reached)
  metrics = {name: np.asarray(score, np.float64) for name in scoring.names}
  return TrialTable(
      hparams={k: np.asarray(v) for k, v in hparams.items()},
      round=np.zeros(count, np.int64), trial=np.arange(count), lane=np.arange(count),
      bracket=np.full(count, -1), start_epoch=np.zeros(count, np.int64), epochs=reached,
      parent=np.full(count, -1) if parent is None else np.asarray(parent),
      status=np.full(count, "finished", object) if status is None else np.asarray(status, object),
      metrics=metrics, epoch_loss=np.zeros((count, int(reached.max())), np.float32),
      scoring=scoring)


def noisy_search(seed: int, count: int = 200, noise: float = 0.01, space: vt.Space = SPACE):
  """``(hparams, true values, scores)`` of ``count`` configurations drawn over ``space``."""
  hparams = space.sample(seed, 0, count)
  truth = bowl(hparams)
  return hparams, truth, truth + noise * np.random.default_rng(seed).standard_normal(count)


def test_choosing_by_the_estimate_beats_choosing_by_the_raw_score_on_a_noisy_bowl():
  """200 trials, noise sd 0.01 (a point of accuracy): the spread of the true values of the
  best 20 trials, so which of them scores best is luck. Over 20 seeds of the noise the
  estimate's choice is truly better, and its ranking nearer the truth's."""
  raw_regret, regret, raw_rho, rho, covered, stderr, near_top = [], [], [], [], [], [], []
  for seed in range(20):
    hparams, truth, score = noisy_search(seed)
    near_top.append(np.ptp(np.sort(truth)[-20:]))
    found = estimate(table_of(hparams, score), SPACE, fit_size=100)
    raw_regret.append(truth.max() - truth[np.argmax(score)])
    regret.append(truth.max() - truth[order_by(found)[0]])
    raw_rho.append(spearmanr(score, truth)[0])
    rho.append(spearmanr(found.mean, truth)[0])
    covered.append(np.mean(np.abs(found.mean - truth) <= 2 * found.stderr))
    stderr.append(np.median(found.stderr))
  # Not trivial: the noise is as wide as the best 20's true values, the raw choice loses a
  # fifth of a point on average, and the raw ranking is off.
  assert 0.007 < np.mean(near_top) < 0.014
  assert np.mean(raw_regret) > 0.002 and np.mean(raw_rho) < 0.98
  assert np.mean(regret) < np.mean(raw_regret) / 3
  assert sum(r < q for r, q in zip(regret, raw_regret, strict=True)) >= 15
  assert np.mean(rho) > np.mean(raw_rho) + 0.02
  # The standard errors mean something: well under one trial's noise, and about right.
  assert np.median(stderr) < 0.005 and 0.85 < np.mean(covered) <= 1.0


def test_the_estimate_is_the_gaussian_process_posterior_given_the_conditioned_trials_and_itself():
  hparams, _, score = noisy_search(0, count=120)
  found = estimate(table_of(hparams, score), SPACE, fit_size=40, condition_size=60)
  [group] = found.groups
  assert (group.fitted, group.conditioned) == (40, 60)
  unit = SPACE.to_unit(hparams)
  z = (score - score.mean()) / score.std()
  rows = fit_rows(unit, score, 60)
  outside = np.setdiff1d(np.arange(120), rows)
  for row in (int(rows[0]), int(rows[-1]), int(outside[0]), int(outside[-1])):
    given = np.union1d(rows, [row])
    regressor = GaussianProcessRegressor(group.kernel, optimizer=None).fit(unit[given], z[given])
    mean, sd = regressor.predict(unit[row:row + 1], return_std=True)
    latent = np.sqrt(sd[0] ** 2 - group.kernel.k2.noise_level)
    np.testing.assert_allclose(found.mean[row], score.mean() + score.std() * mean[0], rtol=1e-9)
    np.testing.assert_allclose(found.stderr[row], score.std() * latent, rtol=1e-6)
  assert group.noise_sd == pytest.approx(score.std() * np.sqrt(group.kernel.k2.noise_level))


def test_the_surface_peaks_where_the_bowl_does_and_is_the_posterior_at_every_grid_point():
  """The fitted surface over learning rate x weight decay (the report's surface.png) finds
  the bowl's peak from 300 noisy trials, and is the fitted Gaussian process's posterior
  mean (the same kernel as estimate()'s) at the grid's points."""
  hparams, _, score = noisy_search(1, count=300)
  table = table_of(hparams, score)
  found = surface(table, SPACE, "learning_rate", "weight_decay", {"learning_rate": 0.1,
                                                                  "weight_decay": 0.1}, size=25)
  assert found.mean.shape == (25, 25) and found.at == {}
  np.testing.assert_allclose(found.x_values[[0, -1]], [1e-5, 1.0], rtol=1e-5)
  np.testing.assert_allclose(found.y_values[[0, -1]], [1e-8, 1e-1], rtol=1e-5)
  i, j = np.unravel_index(np.argmax(found.mean), found.mean.shape)
  assert abs(np.log10(found.x_values[j]) + 2.5) < 0.5  # The peak: 10^-2.5 and 10^-4.
  assert abs(np.log10(found.y_values[i]) + 4.0) < 1.0
  grid = {"learning_rate": np.repeat(found.x_values, 1), "weight_decay": found.y_values}
  truth = bowl({"learning_rate": grid["learning_rate"][None, :],
                "weight_decay": grid["weight_decay"][:, None]})
  near = truth > 0.85  # Where the trials are dense, the fit is within a point of the truth.
  assert np.abs(found.mean - truth)[near].max() < 0.01
  [group] = estimate(table, SPACE).groups
  assert found.group.kernel == group.kernel and found.group.rows.tolist() == list(range(300))
  unit = SPACE.to_unit(hparams)
  z = (score - score.mean()) / score.std()
  regressor = GaussianProcessRegressor(group.kernel, optimizer=None).fit(unit, z)
  point = SPACE.to_unit({"learning_rate": found.x_values[[3]], "weight_decay": found.y_values[[7]]})
  expected = score.mean() + score.std() * regressor.predict(point)[0]
  np.testing.assert_allclose(found.mean[7, 3], expected, rtol=1e-6)


def test_a_surface_needs_two_traced_parameters_and_the_chosen_values():
  hparams, _, score = noisy_search(0, count=20)
  table = table_of(hparams, score)
  at = {"learning_rate": 0.1, "weight_decay": 0.1}
  with pytest.raises(SettingsError, match="surface over 'momentum': expected a traced"):
    surface(table, SPACE, "momentum", "weight_decay", at)
  with pytest.raises(SettingsError, match="expected two different parameters"):
    surface(table, SPACE, "weight_decay", "weight_decay", at)
  with pytest.raises(SettingsError, match="at has parameters"):
    surface(table, SPACE, "learning_rate", "weight_decay", {"learning_rate": 0.1})
  few = table_of({k: v[:3] for k, v in hparams.items()}, score[:3])
  assert surface(few, SPACE, "learning_rate", "weight_decay", at) is None  # Too few to fit.


def test_a_minimised_metric_is_estimated_as_its_negation_and_ranked_lowest_first():
  hparams, truth, score = noisy_search(1, count=150)
  # Fewer conditioned trials than trials: the ones near the best raw scores are the lowest mse.
  settings = dict(fit_size=50, condition_size=80)
  as_loss = estimate(table_of(hparams, 1 - score, MSE), SPACE, **settings)
  as_accuracy = estimate(table_of(hparams, score), SPACE, **settings)
  np.testing.assert_allclose(as_loss.mean, 1 - as_accuracy.mean, rtol=1e-7)
  np.testing.assert_allclose(as_loss.stderr, as_accuracy.stderr, rtol=1e-5)
  assert order_by(as_loss).tolist() == order_by(as_accuracy).tolist()
  assert order_by(as_loss, "lcb").tolist() == order_by(as_accuracy, "lcb").tolist()
  np.testing.assert_array_equal(as_loss.bound(2.0), as_loss.mean + 2.0 * as_loss.stderr)
  assert truth[order_by(as_loss)[0]] > truth.max() - 0.005


def test_the_lower_confidence_bound_passes_over_a_high_estimate_that_is_uncertain():
  for scoring, sign in ((CLASSIFICATION, 1.0), (MSE, -1.0)):
    found = Estimates(mean=sign * np.array([0.90, 0.89, np.nan, 0.80]),
                      stderr=np.array([0.05, 0.005, np.nan, 0.0]), groups=(), scoring=scoring)
    assert order_by(found, "estimate").tolist() == [0, 1, 3]
    assert order_by(found, "lcb").tolist() == [1, 0, 3]  # 0.885, 0.85, 0.80
    assert order_by(found, "lcb", k=0.0).tolist() == [0, 1, 3]
    np.testing.assert_allclose(found.by("lcb", 1.0)[:2], sign * np.array([0.85, 0.885]))


def test_each_bucket_and_each_epoch_reached_is_estimated_on_its_own():
  space = vt.Space(**SPACE, hidden=vt.Choice([16, 32]))
  hparams, _, score = noisy_search(2, count=160)
  hidden = np.array([16, 32] * 80, object)
  # The wide bucket is better, and best elsewhere; half the narrow one stopped early.
  score = np.where(hidden == 32, 0.1 + score[::-1], score)
  reached = np.where(np.arange(160) % 4 == 0, 1, 3)  # Every other row of hidden=16.
  table = table_of({**hparams, "hidden": hidden}, score, reached=reached)
  found = estimate(table, space)
  assert [(g.values, g.reached, len(g.rows)) for g in found.groups] == [
      ({"hidden": 16}, 1, 40), ({"hidden": 32}, 3, 80), ({"hidden": 16}, 3, 40)]
  for group in found.groups:
    alone = estimate(table.take(group.rows), space)
    np.testing.assert_array_equal(found.mean[group.rows], alone.mean)
    np.testing.assert_array_equal(found.stderr[group.rows], alone.stderr)


def test_diverged_trials_and_population_based_training_children_get_no_estimate():
  hparams, _, score = noisy_search(3, count=80)
  score = score.copy()
  score[[5, 6]] = np.nan, np.inf
  status = np.full(80, "finished", object)
  status[[5, 7]] = "diverged"  # Row 7 diverged with a finite score written: still left out.
  parent = np.full(80, -1)
  parent[8] = 2  # A child continuing trial 2's weights.
  found = estimate(table_of(hparams, score, status=status, parent=parent), SPACE)
  left_out = [5, 6, 7, 8]
  assert np.isnan(found.mean[left_out]).all() and np.isnan(found.stderr[left_out]).all()
  assert np.isfinite(np.delete(found.mean, left_out)).all()
  assert not set(order_by(found).tolist()) & set(left_out)
  kept = np.delete(np.arange(80), left_out)
  clean = estimate(table_of({k: v[kept] for k, v in hparams.items()}, score[kept]), SPACE)
  np.testing.assert_array_equal(found.mean[kept], clean.mean)


def test_the_same_trials_give_the_same_estimates_and_are_left_as_they_were():
  hparams, _, score = noisy_search(4, count=150)
  table = table_of(hparams, score)
  before = {k: v.copy() for k, v in table.hparams.items()}, table.score.copy()
  first = estimate(table, SPACE, fit_size=50, condition_size=100)
  again = estimate(table, SPACE, fit_size=50, condition_size=100)
  np.testing.assert_array_equal(first.mean, again.mean)
  np.testing.assert_array_equal(first.stderr, again.stderr)
  np.testing.assert_array_equal(table.score, before[1])
  for name, values in before[0].items():
    np.testing.assert_array_equal(table.hparams[name], values)


def test_records_give_the_estimates_the_table_gives():
  hparams, _, score = noisy_search(5, count=40)
  table = table_of(hparams, score)
  trials = [table.trial_at(row, SPACE) for row in range(len(table))]
  from_table = estimate(table, SPACE)
  for records in (trials, [t.to_json() for t in trials]):
    found = estimate(records, SPACE, CLASSIFICATION)
    np.testing.assert_array_equal(found.mean, from_table.mean)


def test_a_group_of_three_or_fewer_keeps_its_raw_scores_with_a_large_standard_error():
  space = vt.Space(**SPACE, hidden=vt.Choice([16, 32]))
  hparams, _, score = noisy_search(6, count=43)
  hidden = np.array([16] * 40 + [32] * 3, object)
  found = estimate(table_of({**hparams, "hidden": hidden}, score), space)
  small = found.groups[1]
  assert small.values == {"hidden": 32} and small.fitted == 0 and small.kernel is None
  np.testing.assert_array_equal(found.mean[40:], score[40:])
  # The spread of every trial's score: above any fitted trial's standard error, and its noise.
  np.testing.assert_allclose(found.stderr[40:], score.std())
  assert found.stderr[40:].min() > found.stderr[:40].max()
  assert found.stderr[40:].min() > found.groups[0].noise_sd
  lone = estimate(table_of({k: v[:1] for k, v in hparams.items()}, score[:1]), SPACE)
  assert lone.mean[0] == score[0] and lone.stderr[0] == np.inf
  assert order_by(lone).tolist() == [0] and order_by(lone, "lcb").tolist() == []
  flat = estimate(table_of(hparams, np.full(43, 0.1)), SPACE)
  assert (flat.mean == 0.1).all() and (flat.stderr == 0).all()


def _bad_tables():
  hparams, _, score = noisy_search(7, count=10)
  good = table_of(hparams, score)
  short = dict(hparams, weight_decay=hparams["weight_decay"][:9])
  wide = dict(hparams, learning_rate=np.where(np.arange(10) == 3, 2.0,
                                              hparams["learning_rate"]).astype(np.float32))
  narrowed = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1), weight_decay=SPACE["weight_decay"])
  return [
      (table_of(short, score), SPACE, {}, "hparams\\['weight_decay'\\] has shape \\(9,\\); "
       "expected \\(10,\\)"),
      (table_of({"learning_rate": hparams["learning_rate"]}, score), SPACE, {},
       "missing \\['weight_decay'\\]"),
      (good, vt.Space(learning_rate=SPACE["learning_rate"]), {}, "not in the space \\['weight"),
      (table_of(wide, score), SPACE, {}, "'learning_rate': trial row 3 has 2.0, outside"),
      (good, narrowed, {}, "outside the space's \\[0.001, 0.1\\] log"),
      (good, SPACE, {"scoring": MSE}, "differs from the trials' own"),
      (good, SPACE, {"fit_size": 3}, "fit_size=3; expected"),
      (good, SPACE, {"fit_size": 50, "condition_size": 40}, "condition_size=40; expected"),
      ([t.to_json() for t in [good.trial_at(0, SPACE)]], SPACE, {}, "need their scoring"),
      ("trials.jsonl", SPACE, {}, "expected a TrialTable or a list"),
  ]


@pytest.mark.parametrize("trials, space, settings, message", _bad_tables())
def test_bad_input_is_refused_naming_what_is_wrong(trials, space, settings, message):
  with pytest.raises(SettingsError, match=message):
    estimate(trials, space, **settings)


def test_a_damaged_record_and_a_bad_rule_are_refused_naming_them():
  hparams, _, score = noisy_search(8, count=5)
  record = table_of(hparams, score).trial_at(2, SPACE).to_json()
  del record["epochs"]
  with pytest.raises(RecordError, match="'trials\\[1\\]' has no 'epochs' field"):
    estimate([table_of(hparams, score).trial_at(0, SPACE).to_json(), record], SPACE,
             CLASSIFICATION)
  found = estimate(table_of(hparams, score), SPACE)
  with pytest.raises(SettingsError, match="rule='best'; expected one of \\['estimate', 'lcb'\\]"):
    order_by(found, "best")
  with pytest.raises(SettingsError, match="k=-1; expected a finite number"):
    found.by("lcb", k=-1)


@pytest.mark.slow
def test_the_estimate_benchmark_runs_and_writes_its_results(tmp_path):
  """A smoke run (one problem, seed and noise level, small searches): the script must not rot."""
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments",
                      "bench_estimate.py")
  spec = importlib.util.spec_from_file_location("bench_estimate", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # Its dataclasses look themselves up there.
  spec.loader.exec_module(module)
  out = tmp_path / "estimate.json"
  assert module.main(["--problems", "bowl-2d", "--seeds", "2", "--trials", "60", "--noises",
                      "0.01", "--timing-sizes", "60", "--out", str(out)]) == 0
  report = json.loads(out.read_text())
  assert set(report["results"]) == {"bowl-2d|uniform|60|0.01", "bowl-2d|narrowed|60|0.01"}
  summary = report["results"]["bowl-2d|narrowed|60|0.01"]["summary"]
  assert set(summary["regret"]) == {"raw", "estimate", "lcb", "kernel"}
  assert all(run["regret"]["raw"] >= 0 for run in
             report["results"]["bowl-2d|narrowed|60|0.01"]["runs"])
  assert set(report["timings"]) == {"bowl-2d T=60", "bowl-6d T=60"}
