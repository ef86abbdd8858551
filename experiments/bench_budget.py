"""The anytime race (issue 21): how good is the model each method hands back after B seconds?

**Tasks**: the four of ``bench_search.py`` (``problems.SEARCH_PROBLEMS``: digits MLP,
digits CNN, noisy teacher MLP, 6-parameter teacher) and ``digits_sgd``, whose good
learning rates are a narrow band: MLP(128) on the digits with SGD (momentum 0.9) for 3
epochs, learning rate 1e-6..1e2 and weight decay 1e-8..1e-1. Measured once on data seed 0
(a grid of 29 rates, 2 seeds each, no weight decay; the one-off script was not kept;
2026-12-07), validation accuracy: 1e-4: 11%, 1e-3: 14%, 1e-2: 62%, 1e-1: 88%, 0.32: 92.5%,
0.56: 94.6%, 1.0: 93.0%, 1.78: 29%, 3.2 and up: chance. The score moves over 4 decades of
learning rate; three epochs are too few for a small rate to finish, and a rate 3 times the
best diverges, so only about half a decade (0.3 to 1) lies within 2 points of the best: a
sixteenth of the range, its upper edge a cliff.

For every task, budget B, method and seed, a method spends at most B seconds of
wall time, everything included, and hands back one configuration:

* ``default``: ``vt.tune(..., budget=B)`` with the library's defaults (sampler,
  strategy, confirmation), the task's population, epochs and batch size, then
  ``result.final_fit()``, all timed (the budget counts the final fit);
* ``narrow``, ``density``, ``evolution``: the same with ``sampler=`` that name
  (by default only those that are not already the default's);
* ``tpe``: Optuna's ``TPESampler(seed=seed)`` driving vmaptune's one-lane compiled
  trainer (``problems.OneLane``: the same model, data, optimizer, schedule and
  epochs, one configuration at a time), timed from building the trainer on. It
  stops proposing when the next trial and the final retrain of its best
  configuration would no longer fit B (at the recent pace), then retrains that
  configuration once: the final retrain counts inside B, as vmaptune's final fit does.

Every run compiles its programs (no persistent compilation cache: the worst case for
every method; ``--cache DIR`` compiles every method through the same one instead).

**Quality** is the chosen configuration's *expected test score*: the mean test
accuracy over ``--eval-seeds`` (8) fresh-seed retrains, trained as lanes of one
population (untimed, outside every budget) with the same keys for every method
and cell, so differences between methods are not seed draws. One read of one
seed varies by a point or more, as much as the differences being measured.

**Ceiling**: per task, computed once and cached (``--ceilings``, keyed by the
task's definition and the ceiling's sizes): a dense grid of ``--ceiling-size``
configurations (2 parameters; a random sample with more), each trained once;
the ``--ceiling-top`` best by validation accuracy, and as many best by the mean
of their 9 nearest neighbours' (one seed flatters a configuration at the edge of
divergence; its neighbourhood does not), retrained with ``--ceiling-seeds`` (16)
seeds; the ceiling is the expected test score of the one with the best mean
validation accuracy (what a tuner that knew the validation surface exactly
would hand back; the best test mean of the candidates is recorded too),
measured on the seeds every cell is measured with (that configuration
retrained on them, cached beside it), so that regret is a paired difference. A
method may land above it by seed noise (negative regret).

Every cell uses one data split (``--data-seed``; a teacher task's teacher is
drawn from it too), so one ceiling holds for every seed; a seed varies the
search (sampling, initialisation, data order). Reported per (task, method,
budget), mean and standard error over seeds: expected test, regret (ceiling
minus expected test), optimism (the score the method reports for its choice,
vmaptune's confirmation mean or TPE's best trial, minus its expected test), and
per (task, method) the time to quality: the smallest budget whose mean expected
test is within 0.5 point of the ceiling. Issue 21's targets (requirement 5) are
checked per cell with their margins.

    python experiments/bench_budget.py                 # the full race: hours on 2 CPU cores
    python experiments/bench_budget.py --resume        # continue an interrupted race
    python experiments/bench_budget.py --quick         # a smoke run: about 2 minutes
    python experiments/bench_budget.py --tasks digits_mlp digits_sgd --budgets 10 20 --seeds 2
    python experiments/bench_budget.py --markdown experiments/results/budget-race-cpu.json

Results: ``experiments/results/budget-race-<platform>[-quick].json`` (``--out``),
written after every cell; a markdown table beside it (``.md``) and the figure
(``.png``: expected test against budget, one panel per task, one line per method
with a band of one standard error, the ceiling dashed).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable

import jax
import numpy as np

import vmaptune as vt
from vmaptune.errors import BudgetError
from vmaptune.lanes.keys import REPLICA, round_keys
from vmaptune.rundir import write_json
from vmaptune.search.engine import Engine
from vmaptune.search.settings import Settings
from vmaptune.strategies.base import lane_scores

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # The shared problems, also when this file is loaded by path.
  sys.path.insert(0, HERE)
from problems import (  # noqa: E402
    SEARCH_PROBLEMS,
    OneLane,
    Problem,
    digits,
    recent_pace,
    tpe_search,
)

# A narrow learning-rate optimum (see the module docstring).
DIGITS_SGD = Problem(
    "digits_sgd", vt.models.MLP(hidden=(128,)), digits,
    dict(population=64, epochs=3, batch_size=64, optimizer="sgd"),
    vt.Space(learning_rate=vt.LogUniform(1e-6, 1e2), weight_decay=vt.LogUniform(1e-8, 1e-1)))
TASKS = {**SEARCH_PROBLEMS, DIGITS_SGD.name: DIGITS_SGD}
BUDGETS = (10, 20, 40, 80, 160)
DEFAULT, TPE = "default", "tpe"
SAMPLERS = ("narrow", "density", "evolution")
METHODS = (DEFAULT, *SAMPLERS, TPE)
EVAL_KEY_SEED = 2 ** 31 - 1  # Retrains use round keys of this seed, which no search uses.
# How a ceiling is computed, part of its cache key: a change here computes it again.
CEILING_RULE = ("screen: each configuration once, on round 1's keys folded with 0; top by "
                "validation and top by the mean validation of 9 nearest neighbours; retrained "
                "on round 0's keys folded with 0..seeds-1; chosen by mean validation; the "
                "ceiling is its mean test")
NEIGHBOURS = 9  # A grid point and its 8 neighbours.
NEAR_POINTS = 0.5  # "Within reach of the ceiling" (time to quality), in points.
# Issue 21 requirement 5.
EARLY_BUDGET_S, EARLY_TPE_REGRET_POINTS = 40, 0.5
REGRET_BUDGET_S, MAX_REGRET_POINTS = 80, 0.5
MAX_OPTIMISM_POINTS = 0.5
# Configurations a ceiling screens: {2 parameters (a 32 x 32 grid): 1024, more (random): 4096}.
CEILING_SIZES = {"grid": 1024, "random": 4096}
# --quick: digits_sgd at budgets near the least a vmaptune run of it fits on the 2-core CPU
# (4 s is refused), and a tiny ceiling: 4 configurations, the best retrained with as many
# seeds as a cell's evaluation, so that its retrains and the cells' share one program.
QUICK = dict(tasks=["digits_sgd"], budgets=[8, 12], seeds=2, ceiling_size=4, ceiling_top=1,
             ceiling_seeds=2, eval_seeds=2, methods=[DEFAULT, TPE])


def default_sampler() -> str:
  """The name of the sampler ``vt.tune`` uses when none is given, e.g. ``"narrow"``."""
  return Settings().parsed_sampler().describe().split("(")[0]


def definition(problem: Problem, data_seed: int) -> dict:
  """What a task is: results and ceilings of another definition are not reused."""
  return {"task": problem.name, "model": repr(problem.model),
          "data": repr(problem.data(data_seed)), "data_seed": data_seed,
          "space": problem.space.to_dict(), "settings": problem.settings}


class Retrainer:
  """A task's configurations retrained as lanes of one population, outside every budget.

  Seed ``r`` of a configuration trains with the keys of ``round_keys(EVAL_KEY_SEED,
  round_index)`` folded with ``r`` (as a search with ``seeds`` folds them), so every
  configuration retrained with the same round sees the same seeds. Calls hold at most
  ``MAX_CALL`` lanes and at least ``min_call`` (a short call is padded), so that calls
  of a size reuse one compiled program.
  """

  MAX_CALL = 256

  def __init__(self, problem: Problem, data: vt.Dataset, min_call: int):
    settings = {k: v for k, v in problem.settings.items() if k != "rounds"}
    settings.update(population=1, rounds=1, confirm="off", sampler="narrow", strategy="random")
    engine = Engine(problem.model, data, problem.space, Settings.from_kwargs(settings))
    self.pop = engine.population(engine.buckets.find({}))
    self.test = self.pop.put_batches(data.read_test())
    self.min_call = min_call

  def scores(self, schedules: list[list], seeds: int,
             round_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation and test accuracy ``[len(schedules), seeds]`` (0 where a lane diverged)
    of each lineage schedule ``[(first_epoch, end_epoch, hparams), ...]``."""
    jobs = [(i, r) for r in range(seeds) for i in range(len(schedules))]
    call = max(self.min_call, min(self.MAX_CALL, len(jobs)))
    val, test = (np.zeros((len(schedules), seeds)) for _ in range(2))
    for first in range(0, len(jobs), call):
      part = jobs[first:first + call]
      padded = part + [part[-1]] * (call - len(part))
      got = self._train([schedules[i] for i, _ in padded], [r for _, r in padded],
                        round_index)
      for (i, r), v, t in zip(part, *got, strict=False):
        val[i, r], test[i, r] = v, t
    return val, test

  def _train(self, schedules: list[list], replicas: list[int],
             round_index: int) -> tuple[np.ndarray, np.ndarray]:
    """One call: every lane's validation and test accuracy ``[L]``."""
    pop = self.pop
    cuts = sorted({first for s in schedules for first, _, _ in s} | {pop.epochs})

    def at(epoch: int) -> dict[str, np.ndarray]:
      current = [next(h for first, end, h in s if first <= epoch < end) for s in schedules]
      hparams = {name: np.array([h[name] for h in current], np.float32) for name in current[0]}
      hparams[REPLICA] = np.array(replicas, np.float32)
      return hparams

    init_key, data_key = round_keys(EVAL_KEY_SEED, round_index)
    lanes = pop.init(at(0), init_key)
    for first, end in zip(cuts, cuts[1:], strict=False):
      if first > 0:  # A lineage changes its hyperparameters here; the weights go on.
        lanes = pop.select(lanes, np.arange(lanes.count), at(first))
      lanes, _ = pop.advance(lanes, data_key, first, end - first)
    scored = lane_scores(pop, lanes)
    test = np.asarray(pop.evaluate(lanes.state.params, self.test)["accuracy"])[:lanes.count]
    test = np.where(scored.diverged | ~np.isfinite(test), 0.0, test)
    return np.nan_to_num(scored.metrics["accuracy"], nan=0.0), test


def ceiling_configurations(space: vt.Space, size: int) -> tuple[str, dict[str, np.ndarray]]:
  """``(kind, {name: [N]})``: a grid of cell centres over the unit cube's 2 axes
  (``round(sqrt(size))`` a side), or ``size`` random configurations with more."""
  if len(space.traced()) == 2:
    side = max(2, round(math.sqrt(size)))
    centres = (np.arange(side) + 0.5) / side
    unit = np.stack(np.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    return f"grid {side}x{side}", space.from_unit(unit)
  return f"random {size}", space.traced().sample(seed=EVAL_KEY_SEED, round_index=0, size=size)


def ceiling_candidates(space: vt.Space, configs: dict[str, np.ndarray], screen: np.ndarray,
                       top: int) -> np.ndarray:
  """Indices of the configurations worth retraining: the ``top`` best by their one-seed
  screen score and the ``top`` best by the mean score of their ``NEIGHBOURS`` nearest in
  the unit cube (themselves included). One seed flatters configurations next to a cliff
  (a learning rate at the edge of divergence wins on a lucky seed and loses on others);
  their neighbourhood does not."""
  from scipy.spatial import cKDTree

  unit = space.to_unit(configs)
  _, near = cKDTree(unit).query(unit, k=min(NEIGHBOURS, len(unit)))
  smoothed = screen[near.reshape(len(unit), -1)].mean(axis=1)
  by_score = np.argsort(-screen, kind="stable")[:top]
  by_neighbours = np.argsort(-smoothed, kind="stable")[:top]
  return np.array(list(dict.fromkeys([*by_score.tolist(), *by_neighbours.tolist()])))


def compute_ceiling(problem: Problem, retrainer: Retrainer, size: int, top: int,
                    seeds: int) -> dict:
  """The task's ceiling (see the module docstring), with what it was chosen from."""
  start = time.perf_counter()
  kind, configs = ceiling_configurations(problem.space, size)
  epochs = problem.settings["epochs"]
  schedules = [[(0, epochs, {k: float(v[i]) for k, v in configs.items()})]
               for i in range(len(next(iter(configs.values()))))]
  screen, _ = retrainer.scores(schedules, 1, round_index=1)  # One seed, shared.
  best = ceiling_candidates(problem.space, configs, screen[:, 0], top)
  val, test = retrainer.scores([schedules[i] for i in best], seeds, round_index=0)
  chosen = int(np.argmax(val.mean(axis=1)))
  return {"expected_test": float(test[chosen].mean()),
          "test_se": float(test[chosen].std(ddof=1) / math.sqrt(seeds)),
          "expected_val": float(val[chosen].mean()), "hparams": schedules[best[chosen]][0][2],
          "best_test_mean": float(test.mean(axis=1).max()), "kind": kind,
          "configurations": len(schedules), "candidates": len(best), "seeds": seeds,
          "screen_best_val": float(screen.max()), "wall_s": time.perf_counter() - start}


def cached_ceiling(path: str, problem: Problem, retrainer: Retrainer, data_seed: int,
                   sizes: dict, eval_seeds: int, log: Callable[[str], None]) -> dict:
  """The ceiling from ``path`` if computed for this definition and sizes, else computed
  now and added to ``path``; with its configuration's retrains on the cells' ``eval_seeds``
  (:func:`on_eval_seeds`, also cached)."""
  key_of = {"definition": definition(problem, data_seed), "ceiling": sizes,
            "eval_key_seed": EVAL_KEY_SEED, "rule": CEILING_RULE}
  key = hashlib.sha256(json.dumps(key_of, sort_keys=True, default=str).encode()).hexdigest()[:16]
  cache = {}
  if os.path.exists(path):
    with open(path) as f:
      cache = json.load(f)
  if key not in cache:
    log(f"  ceiling: {sizes} (computed once, cached in {path})")
    cache[key] = {**key_of, "result": compute_ceiling(problem, retrainer, **sizes)}
    write_json(path, cache)
  result = cache[key]["result"]
  paired = result.setdefault("on_eval_seeds", {})
  if str(eval_seeds) not in paired:
    paired[str(eval_seeds)] = on_eval_seeds(problem, retrainer, result["hparams"], eval_seeds)
    write_json(path, cache)
  return result


def on_eval_seeds(problem: Problem, retrainer: Retrainer, hparams: dict, seeds: int) -> dict:
  """The ceiling's configuration retrained on the seeds every cell's choice is measured
  with (the first ``seeds`` of its own): regret is then a paired difference, free of the
  seeds' draw. On a small CNN two of the ceiling's 16 seeds trained badly (test 0.80 and
  0.83 where the rest got 0.90 to 0.97): its mean over 16 seeds was 1.1 points below its
  mean over the cells' 8."""
  epochs = problem.settings["epochs"]
  val, test = retrainer.scores([[(0, epochs, hparams)]], seeds, round_index=0)
  return {"expected_test": float(test.mean()), "expected_val": float(val.mean()),
          "test_seeds": test[0].tolist()}


def ceiling_value(ceiling: dict, eval_seeds: int) -> float:
  """What regret is measured against: the ceiling's expected test on the cells' seeds
  (its mean over its own seeds where those were not retrained)."""
  paired = ceiling.get("on_eval_seeds", {}).get(str(eval_seeds))
  return ceiling["expected_test"] if paired is None else paired["expected_test"]


def tune_settings(problem: Problem) -> dict:
  """The task's ``vt.tune`` settings without ``rounds`` (a budget plans them)."""
  return {k: v for k, v in problem.settings.items() if k != "rounds"}


def run_vmaptune(problem: Problem, data: vt.Dataset, sampler: str | None, budget: float,
                 seed: int, cache: bool | str) -> dict:
  """``vt.tune(budget=B)`` and its final fit, timed; the chosen lineage and what the run
  reports for it (its confirmation's mean, or its search score without one)."""
  method = {} if sampler is None else {"sampler": sampler}
  start = time.perf_counter()
  try:
    result = vt.tune(problem.model, data, problem.space, **tune_settings(problem), **method,
                     budget=budget, seed=seed, cache=cache)
    final = result.final_fit()
  except BudgetError as e:  # Refused before training: the budget cannot hold one round.
    return {"refused": str(e), "wall_s": time.perf_counter() - start}
  wall = time.perf_counter() - start
  best, confirmation = result.best, result.confirmation
  reported = best.score
  if confirmation is not None and math.isfinite(confirmation.mean[confirmation.chosen]):
    reported = float(confirmation.mean[confirmation.chosen])
  return {"wall_s": wall, "rounds": len(result.rounds),
          "configurations": sum(r.configurations for r in result.rounds),
          "lane_epochs": result.lane_epochs, "reported": reported,
          "confirmed": confirmation is not None, "final_fit_test": final.test_accuracy,
          "schedule": result.schedule(best), "chosen": best.hparams_json(),
          "plan": None if result.budget is None else result.budget.to_json()}


def run_tpe(problem: Problem, data: vt.Dataset, budget: float, seed: int,
            cache: bool | str) -> dict:
  """Optuna TPE over the one-lane trainer until the next trial and the final retrain
  would overrun ``budget``; then the final retrain of its best, all timed."""
  compiled = (vt.lanes.compilation.persistent_cache(cache) if isinstance(cache, str)
              else contextlib.nullcontext())
  with compiled:
    start = time.perf_counter()
    lane = OneLane(problem, data, seed)
    found = tpe_search(lane, problem.space, seed, lambda times: time.perf_counter() - start
                       + 2 * recent_pace(times) > budget)
    if found.best is None:
      return {"wall_s": time.perf_counter() - start, "configurations": len(found.times),
              "all_diverged": True}
    accuracy, hparams, _, trial = found.best
    lane.train(hparams, trial)  # The final retrain (its round's keys, as vmaptune's refit).
    wall = time.perf_counter() - start
  epochs = problem.settings["epochs"]
  return {"wall_s": wall, "rounds": None, "configurations": len(found.times),
          "lane_epochs": (len(found.times) + 1) * epochs, "reported": accuracy,
          "confirmed": False, "schedule": [(0, epochs, hparams)], "chosen": hparams}


def run_cell(problem: Problem, data: vt.Dataset, retrainer: Retrainer, method: str,
             budget: float, seed: int, eval_seeds: int, ceiling: float,
             cache: bool | str) -> dict:
  """One method's run at one budget and seed, then its expected test (untimed)."""
  if method == TPE:
    run = run_tpe(problem, data, budget, seed, cache)
  else:
    run = run_vmaptune(problem, data, None if method == DEFAULT else method, budget, seed,
                       cache)
  cell = {"task": problem.name, "method": method, "budget_s": budget, "seed": seed,
          **run, "share": run["wall_s"] / budget}
  if "schedule" not in run:
    return cell
  val, test = retrainer.scores([run["schedule"]], eval_seeds, round_index=0)
  cell.update(expected_test=float(test.mean()), expected_val=float(val.mean()),
              test_seeds=test[0].tolist(), regret=ceiling - float(test.mean()),
              optimism=run["reported"] - float(test.mean()),
              optimism_val=run["reported"] - float(val.mean()))
  cell["schedule"] = [[a, b, h] for a, b, h in run["schedule"]]
  return cell


def mean_se(values: list[float]) -> tuple[float | None, float | None]:
  """Mean and standard error (``None`` with no value; the error with fewer than 2)."""
  if not values:
    return None, None
  se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
  return float(np.mean(values)), se


def summarize(cells: list[dict], ceilings: dict[str, float]) -> dict:
  """Per task, method and budget: mean and standard error over seeds; per task and
  method, the time to quality."""
  groups: dict[tuple, list[dict]] = {}
  for c in cells:
    groups.setdefault((c["task"], c["method"], c["budget_s"]), []).append(c)
  rows = []
  for (task, method, budget), group in sorted(groups.items()):
    scored = [c for c in group if "expected_test" in c]
    row = {"task": task, "method": method, "budget_s": budget, "seeds": len(group),
           "no_model": len(group) - len(scored)}
    for key in ("expected_test", "regret", "optimism", "optimism_val", "wall_s", "share",
                "configurations"):
      row[key], row[f"{key}_se"] = mean_se([c[key] for c in scored])
    row["wall_s"], row["wall_s_se"] = mean_se([c["wall_s"] for c in group])
    rows.append(row)
  quality = {}
  for task, ceiling in ceilings.items():
    for method in sorted({r["method"] for r in rows if r["task"] == task}):
      near = [r["budget_s"] for r in rows if r["task"] == task and r["method"] == method
              and r["no_model"] == 0 and r["expected_test"] is not None
              and r["expected_test"] >= ceiling - NEAR_POINTS / 100]
      quality[f"{task}/{method}"] = min(near) if near else None
  return {"rows": rows, "time_to_quality": quality}


def _points(value: float | None) -> float | None:
  return None if value is None else 100 * value


def _check(task: str, target: str, budget: float | None, value: float | None,
           needed: str, margin: float | None, why: str = "") -> dict:
  """One target's verdict: met when ``margin`` (in the target's units) is at least 0."""
  return {"task": task, "target": target, "budget_s": budget, "value": value,
          "needed": needed, "margin": margin, "met": margin is not None and margin >= 0,
          "why": why}


def targets(summary: dict, ceilings: dict[str, float]) -> list[dict]:
  """Issue 21 requirement 5, per task (and budget), for the default against TPE; margins in
  points of accuracy (seconds for the time to quality)."""
  at = {(r["task"], r["method"], r["budget_s"]): r for r in summary["rows"]}
  checks = []
  for task in ceilings:
    budgets = sorted({b for t, m, b in at if t == task and m == DEFAULT})
    for budget in budgets:
      checks += _budget_targets(task, budget, at[task, DEFAULT, budget],
                                at.get((task, TPE, budget)))
    checks.append(_quality_target(task, summary["time_to_quality"]))
  return checks


def _budget_targets(task: str, budget: float, ours: dict, tpe: dict | None) -> list[dict]:
  """The targets of one task and budget: at least TPE (ahead by more than a standard
  error early where TPE's regret is large), regret at 80 s, optimism."""
  checks = []
  mean = _points(ours["expected_test"])
  if ours["no_model"] or mean is None:
    why = f"{ours['no_model']} of {ours['seeds']} seeds handed back no model"
    return [_check(task, "default handed back a model", budget, None, "every seed", None, why)]
  if tpe is not None and tpe["expected_test"] is not None:
    gap = mean - _points(tpe["expected_test"])
    checks.append(_check(task, "default >= TPE", budget, gap, ">= 0 points", gap))
    if budget <= EARLY_BUDGET_S and _points(tpe["regret"]) > EARLY_TPE_REGRET_POINTS:
      errors = [_points(r["expected_test_se"]) for r in (ours, tpe)]
      se = None if None in errors else math.hypot(*errors)
      checks.append(_check(task, "default ahead of TPE by > 1 SE", budget, gap,
                           f"> {'n/a' if se is None else f'{se:.2f}'} points (SE of the gap)",
                           None if se is None else gap - se,
                           f"TPE's regret {_points(tpe['regret']):.2f} > "
                           f"{EARLY_TPE_REGRET_POINTS}"))
  if budget == REGRET_BUDGET_S:
    regret = _points(ours["regret"])
    checks.append(_check(task, "regret at 80 s", budget, regret,
                         f"<= {MAX_REGRET_POINTS} points", MAX_REGRET_POINTS - regret))
  # Against the expected test, and against the same retrains' validation mean: one data
  # split's validation-to-test gap (points, either way) shifts the first, not the second.
  for key, against in (("optimism", "expected test"), ("optimism_val", "retrains' validation")):
    optimism = _points(ours[key])
    checks.append(_check(task, f"optimism (vs {against})", budget, optimism,
                         f"<= {MAX_OPTIMISM_POINTS} points", MAX_OPTIMISM_POINTS - optimism))
  return checks


def _quality_target(task: str, quality: dict) -> dict:
  """Time to quality at most half of TPE's (TPE never within reach: met by reaching)."""
  ours, tpe = quality.get(f"{task}/{DEFAULT}"), quality.get(f"{task}/{TPE}")
  needed = "<= half of TPE's" + ("" if tpe is None else f" ({tpe / 2:g} s)")
  if ours is None:
    return _check(task, "time to quality", None, None, needed, None,
                  "the default never came within 0.5 point of the ceiling")
  if tpe is None:
    return _check(task, "time to quality", None, ours, needed, 0.0,
                  "TPE never came within 0.5 point at these budgets")
  return _check(task, "time to quality", None, ours, needed, tpe / 2 - ours)


def _cell(mean: float | None, se: float | None, scale: float = 100, form: str = ".2f",
          sign: str = "") -> str:
  if mean is None:
    return "-"
  error = "" if se is None else f" ± {scale * se:{form}}"
  return f"{scale * mean:{sign}{form}}{error}"


def markdown(report: dict) -> str:
  """The results table, the times to quality and the targets, as markdown."""
  lines = ["| task | method | budget s | expected test % | regret (points) | optimism (points) "
           "| optimism on validation | wall s | configurations | no model |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in report["summary"]["rows"]:
    lines.append(
        f"| {r['task']} | {r['method']} | {r['budget_s']:g} | "
        f"{_cell(r['expected_test'], r['expected_test_se'])} | "
        f"{_cell(r['regret'], r['regret_se'], sign='+')} | "
        f"{_cell(r['optimism'], r['optimism_se'], sign='+')} | "
        f"{_cell(r['optimism_val'], r['optimism_val_se'], sign='+')} | "
        f"{_cell(r['wall_s'], r['wall_s_se'], 1, '.1f')} | "
        f"{_cell(r['configurations'], None, 1, '.0f')} | {r['no_model']} of {r['seeds']} |")
  lines += ["", "| task | ceiling % on the cells' seeds | on its own seeds (± SE) | "
            + " | ".join(report["methods"]) + " |",
            "|---|---:|---:|" + "---:|" * len(report["methods"])]
  quality = report["summary"]["time_to_quality"]
  for task, entry in report["tasks"].items():
    c = entry["ceiling"]
    times = [quality.get(f"{task}/{m}") for m in report["methods"]]
    lines.append(f"| {task} | {_cell(ceiling_value(c, report['eval_seeds']), None)} | "
                 f"{_cell(c['expected_test'], c['test_se'])} | "
                 + " | ".join("never" if t is None else f"{t:g} s" for t in times) + " |")
  lines += ["", "| task | target | budget s | value | needed | margin | verdict |",
            "|---|---|---:|---:|---|---:|---|"]
  for t in report["targets"]:
    value = "-" if t["value"] is None else f"{t['value']:+.2f}"
    margin = "-" if t["margin"] is None else f"{t['margin']:+.2f}"
    why = f" ({t['why']})" if t["why"] else ""
    lines.append(f"| {t['task']} | {t['target']} | "
                 f"{'' if t['budget_s'] is None else format(t['budget_s'], 'g')} | {value} | "
                 f"{t['needed']} | {margin} | {'met' if t['met'] else 'MISSED'}{why} |")
  return "\n".join(lines)


def figure(report: dict, path: str) -> str:
  """Expected test against budget: a panel per task, a line per method (band: ± one
  standard error over seeds; a budget where some seed handed back no model is left
  out), the ceiling dashed. Returns ``path``."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  tasks = list(report["tasks"])
  columns = min(3, len(tasks))
  fig, axes = plt.subplots(math.ceil(len(tasks) / columns), columns, squeeze=False,
                           figsize=(4.2 * columns, 3.4 * math.ceil(len(tasks) / columns)))
  colours = {m: f"C{i}" for i, m in enumerate(report["methods"])}
  handles = {}
  for ax, task in zip(axes.flat, tasks, strict=False):
    for method in report["methods"]:
      found = [r for r in report["summary"]["rows"] if r["task"] == task
               and r["method"] == method and r["no_model"] == 0]
      if not found:
        continue
      budgets = np.array([r["budget_s"] for r in found])
      mean = 100 * np.array([r["expected_test"] for r in found])
      se = 100 * np.array([r["expected_test_se"] or 0.0 for r in found])
      handles[method], = ax.plot(budgets, mean, marker="o", color=colours[method])
      ax.fill_between(budgets, mean - se, mean + se, color=colours[method], alpha=0.2)
    ceiling = ceiling_value(report["tasks"][task]["ceiling"], report["eval_seeds"])
    handles["ceiling"] = ax.axhline(100 * ceiling, color="black", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xticks(report["budgets"], [f"{b:g}" for b in report["budgets"]])
    ax.minorticks_off()
    ax.set(title=task, xlabel="budget (s)", ylabel="expected test accuracy (%)")
  for ax in list(axes.flat)[len(tasks):]:
    ax.axis("off")
  fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles),
             fontsize="small")
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def load(path: str, resume: bool, overwrite: bool, definitions: dict[str, dict]) -> dict | None:
  """The results to continue (``None``: start anew).

  Raises:
    SystemExit: results exist but neither ``resume`` nor ``overwrite`` was asked, or a
      task's definition differs from the one its results were measured with.
  """
  if not os.path.exists(path) or overwrite:
    return None
  with open(path) as f:
    report = json.load(f)
  if not resume:
    if report.get("cells"):
      raise SystemExit(f"{path} holds {len(report['cells'])} cells of an earlier race; pass "
                       "--resume to continue it or --overwrite to start anew")
    return None
  for task, entry in report["tasks"].items():
    if task in definitions and json.loads(json.dumps(definitions[task], default=str)) \
        != entry["definition"]:
      raise SystemExit(f"--resume: task {task} in {path} was measured with another "
                       "definition; pass --overwrite (or another --out) to start anew")
  return report


def summarized(report: dict) -> dict:
  """``report`` with its cells' regrets, its summary and targets computed from its cells
  and ceilings."""
  ceilings = {t: ceiling_value(e["ceiling"], report["eval_seeds"])
              for t, e in report["tasks"].items()}
  for cell in report["cells"]:
    if "expected_test" in cell and cell["task"] in ceilings:
      cell["regret"] = ceilings[cell["task"]] - cell["expected_test"]
  report["summary"] = summarize(report["cells"], ceilings)
  report["targets"] = targets(report["summary"], ceilings)
  return report


def finish(report: dict, out: str) -> None:
  """Recomputes the summary and targets and writes the results (atomically)."""
  write_json(out, summarized(report))


def race(args: argparse.Namespace, report: dict, out: str,
         log: Callable[[str], None]) -> None:
  """Every cell not in ``report`` yet, task by task, budget by budget; results written
  after each."""
  done = {(c["task"], c["method"], c["budget_s"], c["seed"]) for c in report["cells"]}
  for name in args.tasks:
    problem = task_problem(name, args.set)
    kind = "grid" if len(problem.space.traced()) == 2 else "random"
    sizes = dict(size=args.ceiling_size or CEILING_SIZES[kind],
                 top=args.ceiling_top, seeds=args.ceiling_seeds)
    data = problem.data(args.data_seed)
    retrainer = Retrainer(problem, data, args.eval_seeds)
    ceiling = cached_ceiling(args.ceilings, problem, retrainer, args.data_seed, sizes,
                             args.eval_seeds, log)
    report["tasks"][name] = {"definition": definition(problem, args.data_seed),
                             "ceiling": ceiling}
    value = ceiling_value(ceiling, args.eval_seeds)
    log(f"\n{name}: ceiling {100 * value:.2f}% on the cells' {args.eval_seeds} seeds "
        f"({100 * ceiling['expected_test']:.2f}% on its {ceiling['seeds']}) at "
        f"{ceiling['hparams']}")
    write_json(out, report)
    if args.ceilings_only:
      continue
    for budget, seed, method in cells(args.budgets, args.seeds, args.methods):
      if (name, method, budget, seed) in done:
        continue
      cell = run_cell(problem, data, retrainer, method, budget, seed, args.eval_seeds,
                      value, args.cache)
      report["cells"].append(cell)
      log(describe(cell))
      finish(report, out)


def cells(budgets: Iterable[float], seeds: int, methods: Iterable[str]) -> Iterable[tuple]:
  """``(budget, seed, method)`` in race order: a budget's every seed before the next."""
  return ((b, s, m) for b in budgets for s in range(seeds) for m in methods)


def task_problem(name: str, overrides: list[str]) -> Problem:
  """Task ``name`` with ``--set KEY=VALUE`` overrides of its settings."""
  problem = TASKS[name]
  changes = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in overrides)}
  return problem.but(settings={**problem.settings, **changes})


def describe(cell: dict) -> str:
  head = f"  {cell['budget_s']:>5g}s seed {cell['seed']} {cell['method']:9s}"
  if "expected_test" not in cell:
    return f"{head} no model ({cell.get('refused', 'every trial diverged')})"
  return (f"{head} expected test {100 * cell['expected_test']:6.2f}% regret "
          f"{100 * cell['regret']:+6.2f} optimism {100 * cell['optimism']:+6.2f} wall "
          f"{cell['wall_s']:6.1f}s ({100 * cell['share']:.0f}%) configurations "
          f"{cell['configurations']}")


def parse(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="a smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
  parser.add_argument("--tasks", nargs="+", choices=list(TASKS))
  parser.add_argument("--budgets", nargs="+", type=float, help=f"seconds (default {BUDGETS})")
  parser.add_argument("--seeds", type=int, help="search seeds per cell (default 5)")
  parser.add_argument("--methods", nargs="+", choices=METHODS,
                      help="default: default, the samplers that are not the default's, tpe")
  parser.add_argument("--eval-seeds", type=int, help="fresh-seed retrains that measure a "
                                                     "chosen configuration (default 8)")
  parser.add_argument("--ceiling-size", type=int, help="configurations the ceiling screens: "
                      "a grid (2 parameters) or a random sample (default 0: 1024 for a grid, "
                      "4096 for a random sample)")
  parser.add_argument("--ceiling-top", type=int, help="how many of them are retrained "
                                                      "with --ceiling-seeds (default 16)")
  parser.add_argument("--ceiling-seeds", type=int, help="default 16")
  parser.add_argument("--data-seed", type=int, default=0, help="the one data split")
  parser.add_argument("--cache", metavar="DIR", default=False,
                      help="compile every method through this persistent cache (default: "
                           "none, every run compiles)")
  parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                      help="override a setting of every task, e.g. population=16")
  parser.add_argument("--resume", action="store_true", help="continue --out, skipping done cells")
  parser.add_argument("--overwrite", action="store_true", help="start anew over --out")
  parser.add_argument("--out", help="results JSON (default experiments/results/"
                                    "budget-race-<platform>[-quick].json)")
  parser.add_argument("--ceilings", help="the ceilings' cache (default experiments/results/"
                                         "budget-ceilings-<platform>.json)")
  parser.add_argument("--ceilings-only", action="store_true",
                      help="compute (and cache) the tasks' ceilings, run no cell")
  parser.add_argument("--markdown", metavar="RESULTS_JSON", help="print a race's tables, exit")
  args = parser.parse_args(argv)
  problem = with_defaults(args)
  if problem:
    parser.error(problem)
  return args


def with_defaults(args: argparse.Namespace) -> str | None:
  """Fills the settings not given (the full race's, or ``QUICK``'s with ``--quick``);
  returns what is wrong with them, if anything."""
  full = dict(tasks=list(TASKS), budgets=list(BUDGETS), seeds=5, ceiling_size=0,
              ceiling_top=16, ceiling_seeds=16, eval_seeds=8, methods=default_methods())
  for key, value in (QUICK if args.quick else full).items():
    if getattr(args, key) is None:
      setattr(args, key, value)
  for key, least in (("seeds", 1), ("ceiling_size", 0), ("ceiling_top", 1),
                     ("eval_seeds", 2), ("ceiling_seeds", 2)):  # A standard error needs 2.
    if getattr(args, key) < least:
      return (f"--{key.replace('_', '-')}={getattr(args, key)}; expected a whole number of at "
              f"least {least}")
  if any(b <= 0 for b in args.budgets):
    return f"--budgets {args.budgets}; expected seconds above zero"
  return None


def default_methods() -> list[str]:
  """The default, the samplers it does not already use, and TPE."""
  return [DEFAULT, *(s for s in SAMPLERS if s != default_sampler()), TPE]


def main(argv: list[str] | None = None) -> int:
  vt.lanes.devices.configure_cpu_devices()  # One CPU device per core, as tune asks.
  args = parse(argv)
  if args.markdown:
    with open(args.markdown) as f:
      report = json.load(f)
    summarized(report)  # From the cells, as this script summarizes them now.
    print(markdown(report))
    return 0
  platform = jax.default_backend()
  results = os.path.join(HERE, "results")
  out = args.out or os.path.join(results, f"budget-race-{platform}"
                                          f"{'-quick' if args.quick else ''}.json")
  args.ceilings = args.ceilings or os.path.join(results, f"budget-ceilings-{platform}.json")
  definitions = {t: definition(task_problem(t, args.set), args.data_seed) for t in args.tasks}
  report = load(out, args.resume, args.overwrite, definitions) or new_report(argv, platform)
  report.update(methods=args.methods, budgets=args.budgets, seeds=args.seeds,
                eval_seeds=args.eval_seeds, default_sampler=default_sampler(),
                ceiling=dict(size=args.ceiling_size or CEILING_SIZES, top=args.ceiling_top,
                             seeds=args.ceiling_seeds),
                cache=args.cache, complete=False)
  start = time.perf_counter()
  race(args, report, out, lambda line: print(line, flush=True))
  if args.ceilings_only:
    print(f"ceilings: {args.ceilings}")
    return 0
  report["complete"] = True
  report["race_wall_s"] = time.perf_counter() - start
  finish(report, out)
  write_table_and_figure(report, out)
  return 0


def new_report(argv: list[str] | None, platform: str) -> dict:
  """A race's results before its first cell: the command and the machine."""
  return {"command": " ".join(["python", "experiments/bench_budget.py",
                               *(sys.argv[1:] if argv is None else argv)]),
          "date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform,
          "devices": len(jax.devices()), "cores": os.cpu_count(), "tasks": {}, "cells": []}


def write_table_and_figure(report: dict, out: str) -> None:
  """The markdown table (printed, and beside ``out`` as ``.md``) and the figure (``.png``)."""
  table = markdown(report)
  stem = os.path.splitext(out)[0]
  with open(stem + ".md", "w") as f:
    f.write(table + "\n")
  print("\n" + table)
  print(f"\nresults: {out}, {stem}.md, {figure(report, stem + '.png')}")

if __name__ == "__main__":
  sys.exit(main())
