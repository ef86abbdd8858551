"""A wall-time budget: as many rounds as fit, planned from measured costs, the
confirmation and the final fit kept back; refused when it cannot hold a round."""

import dataclasses
import json
import re
import time
import types

import jax
import numpy as np
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.search.budget import (
  ESTIMATE_S,
  ESTIMATE_S_PER_TRIAL,
  FINAL_FIT_COMPILE_SHARE,
  ROUND_PER_EPOCH,
  Budget,
  Costs,
  FirstPieceCheck,
  parse_budget,
)


@pytest.mark.parametrize("value", ["5x", "m", "", "-3s", 0, -1, True, float("nan"), [5]])
def test_a_bad_budget_is_named_before_anything_compiles(value, small_data, tiny_mlp, lr_space,
                                                        refused_before_compiling):
  refused_before_compiling(vt.SettingsError, re.escape(f"budget={value!r}; expected a wall time"),
                           model=tiny_mlp, data=small_data, space=lr_space, population=4,
                           epochs=1, budget=value)


def test_budgets_read_as_seconds_in_any_unit():
  assert [parse_budget(v) for v in (90, 2.5, "90", "90s", "10m", "1.5h", " 2H ", None)] == \
      [90.0, 2.5, 90.0, 90.0, 600.0, 5400.0, 7200.0, None]


def _round(wall_s: float, compile_s: float = 0.0, trace_s: float = 0.0, compiles: int = 0):
  return types.SimpleNamespace(wall_s=wall_s, compile_s=compile_s, trace_s=trace_s,
                               compiles=compiles, num_trials=500)


def test_a_round_costs_what_the_rounds_that_compiled_nothing_took():
  first = _round(14.0, compile_s=8.0, trace_s=2.0, compiles=3)
  # Before a round that compiled nothing: the first less its compiling and tracing, or
  # what its later pieces say a round takes once compiled, when less.
  alone = Costs.measured([first])
  assert (alone.fixed_s, alone.round_s) == (10.0, 4.0)
  hinted = Costs.measured([first], first_round_s=1.0)
  assert (hinted.fixed_s, hinted.round_s) == (13.0, 1.0)  # The rest of the round was one-off.
  costs = Costs.measured([first, _round(6.0), _round(4.0)], chunks=4)
  assert (costs.fixed_s, costs.round_s, costs.alone_s, costs.trials) == (9.0, 5.0, 1.25, 1500)
  # The first round's one-off work is fixed cost, not spread over the rounds as they add up.
  many = Costs.measured([first] + [_round(1.0)] * 50)
  assert (many.fixed_s, many.round_s) == (13.0, 1.0)


def test_the_plan_keeps_the_confirmation_and_the_final_fit_back():
  # Fixed 9 s (10 s compiling), rounds of 5 s; the final fit decided to train alone.
  costs = Costs.measured([_round(14.0, 8.0, 2.0, compiles=3), _round(6.0), _round(4.0)],
                         chunks=4, final_in_lanes=False)
  budget = Budget(100.0, confirm_calls=1)
  estimating = ESTIMATE_S + ESTIMATE_S_PER_TRIAL * 1500  # The confirmation's candidates.
  reserve = 5.0 + estimating + FINAL_FIT_COMPILE_SHARE * 10.0 + 1.25
  assert budget.reserve(costs) == pytest.approx(reserve)
  assert budget.reserve(costs, confirm_calls=0) == pytest.approx(reserve - 5.0 - estimating)
  # After 20 s, n more rounds end at 20 + reserve + 5 n (reserve 13.65): 12 end at 93.65
  # and a 13th at 98.65, nearer the aim (98) and within reach (103): 13. After 25 s, 11
  # end at 93.65 and a 12th at 98.65: 12.
  assert budget.rounds_left(costs, elapsed=20.0) == 13
  assert budget.rounds_left(costs, elapsed=25.0) == 12
  assert budget.rounds_left(costs, elapsed=95.0) == 0
  assert budget.confirm_calls_left(costs, elapsed=95.0) == 0
  record = budget.record(costs, 20.0, rounds=3, planned=3 + budget.rounds_left(costs, 20.0))
  assert record.to_json()["reserve_s"] == pytest.approx(reserve, abs=1e-4) and record.planned > 3
  # Once the final fit's programs are compiled (measured: nothing left to compile for
  # the one bucket), the plan keeps back its training alone.
  compiled = dataclasses.replace(costs, final_compile_s=0.0)
  assert budget.reserve(compiled) == pytest.approx(5.0 + estimating + 1.25)
  assert budget.rounds_left(compiled, elapsed=20.0) == 14


def test_the_final_fit_trains_in_a_rounds_programs_where_that_costs_less_than_compiling():
  # Rounds of 5 s; compiling alone guessed at a share of the rounds' 10 s (6 s): a
  # round's training is cheaper than the compile, so the final fit trains in lanes.
  costs = Costs.measured([_round(14.0, 8.0, 2.0, compiles=3), _round(6.0), _round(4.0)],
                         chunks=4)
  alone = FINAL_FIT_COMPILE_SHARE * 10.0 + 1.25
  assert costs.lanes_cheaper() and costs.final_fit_s == pytest.approx(5.0)  # Undecided: least.
  assert dataclasses.replace(costs, final_in_lanes=True).final_fit_s == pytest.approx(5.0)
  assert dataclasses.replace(costs, final_in_lanes=False).final_fit_s == pytest.approx(alone)
  # Rounds of 5 s after 2 s of compiling: compiling alone (1.2 s) is cheaper.
  cheap = Costs.measured([_round(7.0, 1.5, 0.5, compiles=3), _round(5.0)], chunks=4)
  assert not cheap.lanes_cheaper()
  assert cheap.final_fit_s == pytest.approx(FINAL_FIT_COMPILE_SHARE * 2.0 + 1.25)


def test_the_first_round_measures_an_epoch_from_its_second_piece_less_new_compiling():
  compiled = types.SimpleNamespace(compile_seconds=3.0, trace_seconds=1.0)
  check = FirstPieceCheck(Budget(1000.0, confirm_calls=1), time.perf_counter(), compiled,
                          epochs=10, population=64)
  check.trained(first_epoch=0, epoch=1, lanes=64, alive=64, seconds=4.5)
  assert check.round_s is None  # The first piece compiled: it measures nothing.
  # A strategy's next call, on fewer lanes, compiled 2 s more within its 3 epochs of 1.2 s.
  compiled.compile_seconds += 2.0
  check.trained(first_epoch=1, epoch=4, lanes=21, alive=21, seconds=5.6)
  assert check.round_s == pytest.approx(ROUND_PER_EPOCH * 10 * 1.2)
  # A budget that cannot hold the round is refused, naming what was measured.
  tight = FirstPieceCheck(Budget(5.0, confirm_calls=1), time.perf_counter() - 4.0,
                          types.SimpleNamespace(compile_seconds=3.0, trace_seconds=0.5),
                          epochs=10, population=64)
  tight.trained(first_epoch=0, epoch=1, lanes=64, alive=64, seconds=4.0)
  with pytest.raises(vt.errors.BudgetError, match=r"an epoch once compiled: 0\.50s"):
    tight.trained(first_epoch=1, epoch=2, lanes=64, alive=64, seconds=0.5)


def test_a_budget_that_cannot_hold_one_round_is_refused_once_an_epoch_is_measured(
    small_data, tiny_mlp, lr_space, tmp_path):
  with pytest.raises(vt.errors.BudgetError, match=r"budget=0.2s cannot hold one round: "
                     r"compiling, tracing and setting up took .* \(an epoch once compiled: "
                     r".*; give budget='\d+s' or more") as caught:
    vt.tune(tiny_mlp, small_data, lr_space, population=8, epochs=2, batch_size=32,
            budget=0.2, out=str(tmp_path / "run"))
  assert caught.value.needed_s > 0.2
  assert not (tmp_path / "run" / "trials.jsonl").exists()  # No round was recorded.


def test_rounds_cap_a_budget_and_a_resumed_run_goes_on_with_what_is_left(
    small_data, tiny_mlp, lr_space, fast_settings, tmp_path):
  settings = {**fast_settings, "budget": "1h", "rounds": 1}
  first = vt.tune(tiny_mlp, small_data, lr_space, **settings, out=str(tmp_path / "run"))
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert len(first.rounds) == 1 and summary["settings"]["budget"] == "1h"
  spent = summary["budget"]["spent_s"]
  assert summary["budget"]["seconds"] == 3600.0 and summary["budget"]["rounds"] == 1
  assert summary["budget"]["planned"] > 1 and 0 < spent < 3600  # More would have fit.
  time.sleep(0.01)
  trained = []
  again = vt.tune(tiny_mlp, small_data, lr_space, **{**settings, "rounds": 2},
                  out=str(tmp_path / "run"), on_round=trained.append)
  assert len(again.rounds) == 2 and [r.index for r in trained] == [1]
  budget = json.loads((tmp_path / "run" / "summary.json").read_text())["budget"]
  assert budget["rounds"] == 2 and budget["spent_s"] > spent  # The first run's time counts.
  shown = vt.reporting.report.describe_run(vt.load_run(tmp_path / "run"))
  assert "2 of 2 rounds, complete" in shown and f"budget 3600s: {budget['spent_s']:.1f}s spent" \
      in shown


def test_a_budgeted_run_compiles_its_final_fit_ahead_without_reading_the_test_split(
    small_data, tiny_mlp, lr_space, fast_settings, monkeypatch):
  # Compiling alone costs less than a round's training here (nothing does, at no share).
  monkeypatch.setattr(vt.search.budget, "FINAL_FIT_COMPILE_SHARE", 0.0)
  result = vt.tune(tiny_mlp, small_data, lr_space, **{**fast_settings, "budget": "1h"})
  assert small_data.test_reads == 0  # Compiled from the split's shapes, not its values.
  # Kept back: the final fit's training and scoring as timed, and nothing to compile
  # (no share of the rounds' compiling).
  plan = result.budget.to_json()
  assert 0 < plan["reserve_s"] < 0.1 * plan["fixed_s"]
  with CompileCounter() as compiled:
    final = result.final_fit()
  assert compiled.compiles == 0 and small_data.test_reads == 1
  assert final.val == pytest.approx(result.best.metrics, abs=1e-5)  # The trial, trained again.
  assert not final.in_lanes and "trained_in" not in final.summary()


def test_a_budgeted_run_whose_rounds_train_faster_than_a_compile_fits_in_their_programs(
    small_data, tiny_mlp, lr_space, fast_settings, tmp_path):
  # Rounds of 8 lanes train in hundredths of a second, and programs take a second to
  # compile: the final fit is lane 0 of a round's population, in its programs.
  result = vt.tune(tiny_mlp, small_data, lr_space, **{**fast_settings, "budget": "1h"},
                   out=str(tmp_path / "run"))
  with CompileCounter() as compiled:
    final = result.final_fit()
  assert [r.compiles for r in result.rounds[1:]] == [0, 0] and compiled.compiles == 0
  assert final.in_lanes and small_data.test_reads == 1
  assert final.val == pytest.approx(result.best.metrics, abs=1e-5)  # Lane equivalence.
  alone = vt.search.engine.Engine.refit(result._search.engine, final.trial, final.schedule)
  assert final.test == pytest.approx(alone.test, abs=1e-5)  # Laid out as val, scored alike.
  for a, b in zip(jax.tree.leaves(final.params), jax.tree.leaves(alone.params), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5)
  saved = json.loads((tmp_path / "run" / "summary.json").read_text())["final_fit"]
  assert saved["trained_in"] == "lanes"
  again = vt.tune(tiny_mlp, small_data, lr_space, **{**fast_settings, "budget": "1h"},
                  out=str(tmp_path / "run"))  # Resumed: the fit is read back as it was.
  assert again.final.in_lanes and again.final.test == final.test


@pytest.mark.slow  # 20 s of wall time by design.
def test_a_budget_is_spent_within_its_band_final_fit_included(small_data, tiny_mlp, lr_space,
                                                              fast_settings):
  # Rounds of about 0.05 s here once compiled: 20 s hold hundreds, and the plan stops
  # them so that the confirmation and the final fit end within the budget.
  settings = {**fast_settings, "rounds": None, "budget": 20, "confirm": "auto"}
  start = time.perf_counter()
  result = vt.tune(tiny_mlp, small_data, lr_space, **settings)
  result.final_fit()
  spent = time.perf_counter() - start
  assert 0.85 * 20 <= spent <= 1.05 * 20, spent
  assert len(result.rounds) > 3 and result.budget.planned == result.budget.rounds
  assert "budget 20s: " in result.describe()


def test_every_process_follows_process_0s_plan(small_data, tiny_mlp, lr_space, fast_settings,
                                               monkeypatch):
  # A plan made from a clock is process 0's, shared (distributed.agree, a broadcast), or
  # processes would train different rounds and wait on one another. Here process 0 says
  # nothing more fits, whatever this process measured: one round, no confirmation.
  assert vt.lanes.distributed.agree(3.5) == 3.5  # One process: its own.
  told = []
  monkeypatch.setattr(vt.lanes.distributed, "agree", lambda value: told.append(value) or 0.0)
  result = vt.tune(tiny_mlp, small_data, lr_space,
                   **{**fast_settings, "budget": "1h", "confirm": "2x2"})
  assert len(result.rounds) == 1 and result.confirmation is None
  assert max(told) > 1  # This process's own plan held more rounds.


def test_a_lineage_refit_in_a_rounds_programs_equals_it_refit_alone(small_data, tiny_mlp,
                                                                      lr_space, fast_settings):
  # A population-based-training lane that changed its values mid-run: in the round's
  # programs its weights go on into the next segment, as alone.
  result = vt.tune(tiny_mlp, small_data, lr_space, **{**fast_settings, "budget": "1h",
                                                       "strategy": "pbt", "epochs": 4,
                                                       "rounds": 1})
  trial = next(t for t in result.trials() if len(result.schedule(t)) > 1)
  with CompileCounter() as compiled:
    final = result._search.engine.refit(trial, result.schedule(trial), in_lanes=True)
  assert compiled.compiles == 0 and final.in_lanes
  assert final.val == pytest.approx(trial.metrics, abs=1e-5)  # As the lane trained it.
