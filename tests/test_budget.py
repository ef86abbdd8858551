"""A wall-time budget: as many rounds as fit, planned from measured costs, the
confirmation and the final fit kept back; refused when it cannot hold a round."""

import json
import re
import time
import types

import pytest

import vmaptune as vt
from vmaptune.search.budget import (
  ESTIMATE_S,
  ESTIMATE_S_PER_TRIAL,
  FINAL_FIT_COMPILE_SHARE,
  Budget,
  Costs,
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


def test_the_plan_keeps_the_confirmation_and_the_final_fit_back():
  rounds = [types.SimpleNamespace(wall_s=14.0, compile_s=8.0, trace_s=2.0, num_trials=500),
            types.SimpleNamespace(wall_s=6.0, compile_s=0.0, trace_s=0.0, num_trials=500)]
  costs = Costs.measured(rounds, chunks=4)  # Rounds of 4 and 6 s once compiled.
  assert (costs.fixed_s, costs.round_s, costs.alone_s, costs.trials) == (10.0, 5.0, 1.25, 1000)
  budget = Budget(100.0, confirm_calls=1)
  estimating = ESTIMATE_S + ESTIMATE_S_PER_TRIAL * 1000  # The confirmation's candidates.
  reserve = 5.0 + estimating + FINAL_FIT_COMPILE_SHARE * 10.0 + 1.25
  assert budget.reserve(costs) == pytest.approx(reserve)
  assert budget.reserve(costs, confirm_calls=0) == pytest.approx(reserve - 5.0 - estimating)
  # After 20 s, n more rounds end at 20 + reserve + 5 n (reserve 13.35): 12 end at 93.35
  # and a 13th at 98.35, nearer the aim (98) and within reach (103): 13. After 25 s, 11
  # end at 93.35 and a 12th at 98.35: 12.
  assert budget.rounds_left(costs, elapsed=20.0) == 13
  assert budget.rounds_left(costs, elapsed=25.0) == 12
  assert budget.rounds_left(costs, elapsed=95.0) == 0
  assert budget.confirm_calls_left(costs, elapsed=95.0) == 0
  record = budget.record(costs, 20.0, rounds=2, planned=2 + budget.rounds_left(costs, 20.0))
  assert record.to_json()["reserve_s"] == pytest.approx(reserve, abs=1e-4) and record.planned > 2


def test_a_budget_that_cannot_hold_one_round_is_refused_after_its_first_epoch(
    small_data, tiny_mlp, lr_space, tmp_path):
  with pytest.raises(vt.errors.BudgetError, match=r"budget=0.2s cannot hold one round: "
                     r"compiling and tracing took .*; give budget='\d+s' or more") as caught:
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
