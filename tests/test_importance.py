"""Hyperparameter importance: the spread of mean accuracy over groups of first-round
values, diverged trials scored worst."""

import pytest

import vmaptune as vt
from vmaptune.reporting.importance import importance


def test_importance_ranks_by_the_spread_of_group_means_and_scores_divergence_worst(synthetic_run):
  run = vt.load_run(synthetic_run)
  ranking = {i.name: i for i in importance(run.trials, run.space)}
  assert list(ranking)[:2] == ["learning_rate", "activation"]
  # Four bins of ten: the rates below 1e-2 average 0.525, those above 0.925, less the
  # diverged trial scored as the worst accuracy (0.5 instead of 0.9) in the top bin.
  lr = ranking["learning_rate"]
  assert lr.method == "quantile bins (log)" and [g[1] for g in lr.groups] == [10] * 4
  assert lr.spread == pytest.approx(0.925 - 0.525)
  assert [g[2] for g in lr.groups] == pytest.approx([0.525, 0.525, 0.925, 0.925 - 0.04])
  activation = ranking["activation"]
  assert activation.method == "categories"
  assert activation.groups == [("'relu'", 20, pytest.approx(0.75)),
                               ("'tanh'", 20, pytest.approx(0.70 - 0.4 / 20))]
  assert ranking["weight_decay"].spread < activation.spread
  depth = ranking["depth"]  # A structural integer: grouped by value.
  assert depth.method == "categories" and [g[:2] for g in depth.groups] == [
      ("1", 14), ("2", 13), ("3", 13)]


def test_a_minimised_metric_scores_divergence_as_its_highest_value(handwritten_regression):
  import numpy as np

  # mse 1 with the low learning rates, 3 with the high ones, of which one diverged: scored as
  # the worst, the highest mse (3), not the lowest (1), which would make it look good.
  mse = np.array([1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, np.nan])
  trials = handwritten_regression(
      {"learning_rate": [1e-4, 2e-4, 3e-4, 4e-4, 1e-2, 2e-2, 3e-2, 4e-2]}, mse)
  space = vt.Space(learning_rate=vt.LogUniform(1e-4, 1e-1))
  (lr,) = importance(trials, space, bins=2)
  assert [g[1:] for g in lr.groups] == [(4, 1.0), (4, 3.0)]  # Means in mse, lowest best.
  assert lr.spread == 2.0
