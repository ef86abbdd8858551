"""The one ordering of trials: epoch reached, validation accuracy, validation loss,
position; diverged trials left out or last."""

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.trials.ranking import best_row, keep_top, order, order_lanes, rank
from vmaptune.trials.scoring import CLASSIFICATION, Scoring
from vmaptune.trials.table import TrialTable


def test_rank_trials_orders_by_epochs_reached_then_accuracy_then_loss_and_drops_diverged():
  metrics = {"accuracy": np.array([0.9, 0.8, 0.9, np.nan, 0.95]),
             "loss": np.array([0.3, 0.1, 0.2, np.nan, 0.5])}
  diverged = np.array([False, False, False, True, False])
  assert order(CLASSIFICATION, metrics, diverged).tolist() == [4, 2, 0, 1]
  # A trial stopped at an early rung ranks below every trial that trained longer.
  reached = np.array([10, 10, 10, 10, 3])
  assert order(CLASSIFICATION, metrics, diverged, reached).tolist() == [2, 0, 1, 4]


def test_a_minimised_metric_ranks_lowest_first_and_ties_follow_the_other_metrics_directions():
  scoring = Scoring((("mse", "minimize"), ("mae", "minimize"), ("r2", "maximize")), "mse")
  metrics = {"mse": np.array([0.5, 0.2, 0.2, np.nan, 0.2]),
             "mae": np.array([0.1, 0.4, 0.3, np.nan, 0.3]),
             "r2": np.array([0.0, 0.0, 0.1, np.nan, 0.2])}
  diverged = np.array([False, False, False, True, False])
  # mse ascending; the tie at 0.2 by mae ascending, then r2 descending.
  assert order(scoring, metrics, diverged).tolist() == [4, 2, 1, 0]
  # Ranking by a maximised metric turns the order round.
  by_r2 = Scoring(scoring.metrics, "r2")
  # r2 descending; the tie at 0.0 by mse ascending.
  assert order(by_r2, metrics, diverged).tolist() == [4, 2, 1, 0]
  assert order_lanes(scoring, metrics, diverged).tolist() == [4, 2, 1, 0, 3]


@pytest.mark.parametrize("metrics, rank_by, message", [
    ((("mse", "down"),), "mse", "direction 'down'"),
    ((("mse", "minimize"),), "mae", "rank_by='mae' is not a metric"),
    ((("Val MSE", "minimize"),), "Val MSE", "metric name 'Val MSE'"),
    ((("mse", "minimize"), ("mse", "maximize")), "mse", "repeat a name"),
])
def test_a_scoring_refuses_unknown_directions_and_names(metrics, rank_by, message):
  with pytest.raises(ValueError, match=message):
    Scoring(metrics, rank_by)


def test_every_reader_ranks_as_the_search_ranks(written_run):
  """The chosen trial, each round's best, ``vmaptune show``'s top trials and the kept
  trials all come from the one ordering."""
  result, out = written_run
  run = vt.load_run(out)
  table = TrialTable.concat(result.rounds)
  ranked = rank(table)
  assert [(r["round"], r["trial"]) for r in run.top(len(ranked))] == \
      [(int(table.round[i]), int(table.trial[i])) for i in ranked]
  assert result.best.to_record() == run.top(1)[0] == run.chosen
  assert best_row(table) == ranked[0]
  for r in result.rounds:
    assert r.best_trial == rank(r)[0]
    assert r.kept.tolist() == keep_top(r, 0.25).tolist() == rank(r)[:2].tolist()


def test_keeping_the_top_counts_configurations_and_never_keeps_a_diverged_trial():
  ints = lambda values: np.array(values, np.int64)
  table = TrialTable(
      hparams={"learning_rate": np.ones(5, np.float32)}, round=ints([0] * 5),
      trial=np.arange(5), lane=np.arange(5), bracket=ints([-1] * 5),
      start_epoch=ints([0, 0, 0, 0, 2]), epochs=ints([4, 4, 2, 4, 2]), parent=ints([-1] * 4 + [1]),
      status=np.array(["finished", "finished", "halved", "diverged", "finished"], object),
      metrics={"accuracy": np.array([0.5, 0.7, 0.9, np.nan, 0.6]),
               "loss": np.array([1.0, 1.0, 0.1, np.nan, 1.0])},
      epoch_loss=np.zeros((5, 4), np.float32), scoring=CLASSIFICATION)
  # Four configurations (the last trial continued a parent): keep=0.5 keeps two.
  assert keep_top(table, 0.5).tolist() == [1, 4]  # Full budget first; the halved one after.
  assert keep_top(table, 1.0).tolist() == [1, 4, 0, 2]
  assert best_row(table) == 1
  assert best_row(table.take(np.array([2, 3]))) is None  # Nothing trained the full budget.
  assert order_lanes(table.scoring, table.metrics, table.diverged).tolist() == \
      [2, 1, 4, 0, 3]
