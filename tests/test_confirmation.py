"""The confirmation stage: the search's top K configurations retrained with S
fresh seeds each (K x S lanes), the choice made by the mean over seeds, the
optimism recorded, kept in the run directory and restored on resume."""

import json
import re

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.keys import REPLICA
from vmaptune.lanes.population import Population
from vmaptune.rundir.records import ConfirmationRecord, EstimateGroupRecord, EstimatesRecord
from vmaptune.search import confirmation as confirmation_stage
from vmaptune.search.confirmation import Confirmation, top_candidates
from vmaptune.search.settings import Settings
from vmaptune.trials.estimate import estimate, order_by
from vmaptune.trials.ranking import rank
from vmaptune.trials.scoring import CLASSIFICATION, Scoring
from vmaptune.trials.table import Trial, TrialTable


def _trial(index: int, accuracy: float) -> Trial:
  return Trial(round=0, trial=index, lane=index, bracket=-1, hparams={"learning_rate": 0.1},
               start_epoch=0, epochs=2, metrics={"accuracy": accuracy, "loss": 1 - accuracy},
               status="finished", parent=-1, kept=False, scoring=CLASSIFICATION)


def test_the_choice_is_the_best_mean_over_seeds_not_the_best_search_score():
  confirmation = Confirmation(
      candidates=(_trial(0, 0.95), _trial(1, 0.93), _trial(2, 0.92)),
      seed_metrics={"accuracy": np.array([[0.90, 0.86], [0.91, 0.92], [0.99, np.nan]]),
                    "loss": np.array([[0.3, 0.4], [0.3, 0.3], [0.1, np.nan]])},
      epochs=2, wall_s=1.0, scoring=CLASSIFICATION)
  # Candidate 2 has the best seed but one seed diverged: never chosen.
  assert confirmation.chosen == 1 and confirmation.trial.trial == 1
  assert confirmation.optimism == pytest.approx(0.93 - 0.915)
  assert confirmation.spread[1] == pytest.approx(np.std([0.91, 0.92], ddof=1))
  assert confirmation.lane_epochs == 3 * 2 * 2
  summary = confirmation.summary()
  assert summary["chosen"] == 1 and summary["candidates"][2]["seed_accuracy"] == [0.99, None]
  assert json.loads(json.dumps(summary)) == summary


def test_a_minimised_metric_chooses_the_lowest_mean_and_counts_optimism_the_right_way():
  scoring = Scoring((("mse", "minimize"), ("mae", "minimize")), "mse")
  trial = lambda i, mse: Trial(round=0, trial=i, lane=i, bracket=-1, hparams={}, start_epoch=0,
                               epochs=2, metrics={"mse": mse, "mae": mse}, status="finished",
                               parent=-1, kept=False, scoring=scoring)
  confirmation = Confirmation(
      candidates=(trial(0, 0.10), trial(1, 0.12)),
      seed_metrics={"mse": np.array([[0.20, 0.18], [0.13, 0.15]]),
                    "mae": np.array([[0.3, 0.3], [0.3, 0.3]])},
      epochs=2, wall_s=1.0, scoring=scoring)
  assert confirmation.chosen == 1  # Mean 0.14 beats 0.19, although its search score was worse.
  # The search said 0.12, the seeds 0.14: the search was optimistic by 0.02.
  assert confirmation.optimism == pytest.approx(0.02)
  summary = confirmation.summary()
  assert summary["search_val_mse"] == 0.12 and summary["candidates"][0]["seed_mse"] == [0.2, 0.18]
  assert "optimism of the search score +0.02" in confirmation.describe()


def test_the_stage_trains_k_times_s_lanes_in_a_rounds_program_and_the_result_follows_its_choice(
    small_data, tiny_mlp, lr_space, fast_settings, monkeypatch, tmp_path):
  lanes = []
  init = Population.init

  def counting(self, hparams, init_key):
    lanes.append((len(next(iter(hparams.values()))), REPLICA in hparams))
    return init(self, hparams, init_key)

  monkeypatch.setattr(Population, "init", counting)
  result = vt.tune(tiny_mlp, small_data, lr_space, **{**fast_settings, "confirm": "3x2"},
                   out=str(tmp_path / "run"))
  # Three rounds of 8, then a call per seed: 3 candidates padded to a round's 8 lanes.
  assert lanes == [(8, False)] * 3 + [(8, False)] * 2
  confirmation = result.confirmation
  assert confirmation.seed_scores.shape == (3, 2)
  assert confirmation.candidates == tuple(top_candidates(result.rounds, 3, lr_space))
  means = confirmation.seed_scores.mean(axis=1)
  assert means[confirmation.chosen] == np.nanmax(means)
  assert result.best == confirmation.trial
  assert small_data.test_reads == 0  # The test split is still untouched.
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["confirmation"]["optimism"] == pytest.approx(confirmation.optimism)
  assert summary["chosen"]["trial"] == confirmation.trial.trial
  assert summary["lane_epochs"] == sum(r.lane_epochs for r in result.rounds) + 3 * 2 * 2
  assert "over 2 fresh seeds" in result.describe()
  # Resumed, the finished run restores its confirmation without training anything.
  lanes.clear()
  again = vt.tune(tiny_mlp, small_data, lr_space, **{**fast_settings, "confirm": "3x2"},
                  out=str(tmp_path / "run"))
  assert lanes == [] and again.best == result.best
  np.testing.assert_array_equal(again.confirmation.seed_scores, confirmation.seed_scores)
  # Asked for a different confirmation, the resumed run trains that one alone.
  third = vt.tune(tiny_mlp, small_data, lr_space, **{**fast_settings, "confirm": "2x3"},
                  out=str(tmp_path / "run"))
  assert lanes == [(8, False)] * 3 and third.confirmation.seeds == 3


def test_the_stage_compiles_nothing_and_every_candidate_sees_the_same_seeds(
    small_data, tiny_mlp, lr_space, fast_settings, monkeypatch):
  stage, seen = confirmation_stage.confirm, []
  init = Population.init

  def counted(*args, **kwargs):
    with CompileCounter() as compiled:
      result = stage(*args, **kwargs)
    seen.append(compiled.compiles)
    return result

  def recording(self, hparams, init_key):
    seen.append((dict(hparams), init_key))
    return init(self, hparams, init_key)

  monkeypatch.setattr(confirmation_stage, "confirm", counted)
  monkeypatch.setattr(Population, "init", recording)
  result = vt.tune(tiny_mlp, small_data, lr_space, **{**fast_settings, "confirm": "auto"})
  *rounds, (first, first_key), (second, second_key), compiles = seen
  assert compiles == 0  # The confirmation ran in the rounds' programs.
  # auto: the top 8 configurations (a round's lanes), 2 fresh seeds: a call per seed in
  # which all 8 share the seed's keys (common random numbers), as a round's lanes do.
  assert result.confirmation.seed_scores.shape == (8, 2) and REPLICA not in first
  assert not (first_key == second_key).all() and not (first_key == rounds[0][1]).all()
  for name in first:
    np.testing.assert_array_equal(first[name], second[name])
  for i, trial in enumerate(result.confirmation.candidates):
    np.testing.assert_allclose(first["learning_rate"][i], trial.hparams["learning_rate"],
                               rtol=1e-6)


@pytest.mark.slow  # The stage's fast test is the one above; this adds PBT's lineages.
def test_a_lineage_of_population_based_training_is_confirmed_as_it_was_trained(small_data,
                                                                               tiny_mlp,
                                                                               lr_space):
  result = vt.tune(tiny_mlp, small_data, lr_space, population=4, rounds=1, epochs=4,
                   batch_size=32, strategy="pbt(interval=2)", confirm="2x2")
  confirmation = result.confirmation
  assert confirmation.seed_scores.shape == (2, 2) and np.isfinite(confirmation.mean).any()
  for trial in confirmation.candidates:
    assert result.schedule(trial)[-1][1] == 4


@pytest.mark.parametrize("value", ["3", "0x2", "many", 5, "2x"])
def test_a_bad_confirm_setting_names_the_value(value, small_data, tiny_mlp, lr_space,
                                               refused_before_compiling):
  refused_before_compiling(vt.SettingsError, f"confirm={value!r}; expected 'auto', 'off'",
                           model=tiny_mlp, data=small_data, space=lr_space, population=4,
                           rounds=1, epochs=1, confirm=value)


@pytest.mark.parametrize("value, asked", [
    ("9x2", "asks for 9 configurations"), ("2x9", "asks for 9 seeds"),
    ("1000000x1000000", "asks for 1,000,000 configurations")])
def test_a_confirmation_larger_than_a_round_is_refused_naming_the_bound(
    value, asked, small_data, tiny_mlp, lr_space, refused_before_compiling):
  # Each fresh seed trains its candidates in a round's lanes, a round's worth per seed.
  refused_before_compiling(
      vt.SettingsError, re.escape(f"confirm={value!r} {asked}; expected at most 8, the lanes "
                                  "of a round (population=8 x seeds=1)"),
      model=tiny_mlp, data=small_data, space=lr_space, population=8, rounds=1, epochs=1,
      confirm=value)
  assert Settings(population=8, confirm="8x8").confirm_size() == (8, 8)
  # With seeds, one call holds every seed of its candidates: 2 seeds of 8 take a 4x4.
  assert Settings(population=8, seeds=2, confirm="4x4").confirm_size() == (4, 4)
  with pytest.raises(vt.SettingsError, match=r"retrains 4 x 5 = 20 lanes in one call; expected "
                     r"at most 16"):
    Settings(population=8, seeds=2, confirm="4x5").confirm_size()


def test_candidates_are_the_best_estimates_not_the_luckiest_scores(small_data, tiny_mlp,
                                                                    lr_space, fast_settings):
  result = vt.tune(tiny_mlp, small_data, lr_space, **{**fast_settings, "confirm": "4x2"})
  table = TrialTable.concat(result.rounds)
  key = lambda row: (int(table.round[row]), int(table.trial[row]))
  by_estimate = [key(r) for r in order_by(estimate(table, lr_space)) if table.completed[r]][:4]
  by_score = [key(r) for r in rank(table) if table.completed[r]][:4]
  assert by_estimate != by_score  # Here the two orders differ: the test tells them apart.
  assert [(c.round, c.trial) for c in result.confirmation.candidates] == by_estimate
  # Every estimated trial's estimate is recorded, and each candidate's with it.
  found = estimate(table, lr_space)
  record = ConfirmationRecord.from_json(
      json.loads(json.dumps(result.summary()["confirmation"])), CLASSIFICATION)
  rows = np.flatnonzero(np.isfinite(found.mean))
  assert list(zip(record.estimates.round, record.estimates.trial, strict=True)) == [
      key(r) for r in rows]
  np.testing.assert_allclose(record.estimates.mean, found.mean[rows])
  assert sum(g.trials for g in record.estimates.groups) == len(rows)
  for candidate in record.candidates:
    mean, stderr = record.estimates.of(candidate.round, candidate.trial)
    assert (candidate.estimate, candidate.estimate_se) == (mean, stderr)
  assert record.rule == result.confirmation.rule
  assert "top 4 configurations by their estimated score" in result.describe()


def test_seeds_that_disagree_widely_make_the_choice_weigh_the_spread():
  # Candidate 0 has the best mean, but its two seeds lie 10 points apart (an edge of
  # stability); the others' seeds agree within half a point.
  seeds = np.array([[0.97, 0.87], [0.915, 0.92], [0.91, 0.915], [0.905, 0.91]])
  confirmed = lambda scores, noise_sd=None: Confirmation(
      candidates=tuple(_trial(i, 0.95) for i in range(4)),
      seed_metrics={"accuracy": scores, "loss": 1 - scores}, epochs=2, wall_s=1.0,
      scoring=CLASSIFICATION, estimates=None if noise_sd is None else EstimatesRecord(
          (0,), (0,), (0.9,), (0.01,), (EstimateGroupRecord({}, 2, 300, 300, noise_sd),)))
  # The typical spread is the noise of one trial's score that the search's estimate fitted.
  wide = confirmed(seeds, noise_sd=0.01)
  assert wide.typical_spread == 0.01 and wide.rule == "lcb"
  assert wide.mean[0] == max(wide.mean) and wide.chosen == 1  # Mean less sd / sqrt(2).
  np.testing.assert_allclose(wide.bound, wide.mean - wide.spread / np.sqrt(2))
  assert wide.summary()["rule"] == "lcb" and "lower confidence bound" in wide.describe()
  # Where one trial's score is that noisy, 10 points between two seeds is not wide.
  assert confirmed(seeds, noise_sd=0.03).rule == "mean"
  # Without an estimate: the median of the candidates' nonzero spreads (two seeds that got
  # the same count right show the metric's resolution, not an absence of noise).
  seeds[2] = [0.91, 0.91]
  alone = confirmed(seeds)
  assert alone.typical_spread == pytest.approx(np.std([0.915, 0.92], ddof=1))
  assert alone.rule == "lcb" and alone.chosen == 1
  # Spreads of one size: the best mean chooses.
  seeds[0] = [0.93, 0.935]
  agreeing = confirmed(seeds)
  assert agreeing.rule == "mean" and agreeing.chosen == 0
  assert "chosen as the best mean of the top 4" in agreeing.describe()
