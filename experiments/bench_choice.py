"""How the confirmation should choose: rules compared on real searches by the expected
test accuracy of what they choose.

The confirmation retrains the search's top ``K`` configurations with ``S`` fresh
seeds and chooses one. Near the edge of stability a configuration trains well on
one seed and badly on the next (on the race's small CNN a learning rate of 0.047
scored 0.74 to 0.96 over 8 seeds): two lucky seeds make it the best mean, and the
model handed back is worse than a stable neighbour's. This script runs searches
(fixed rounds, so that the number of trials does not depend on the machine's
speed), confirms their candidates with ``--confirm-seeds`` seeds, measures every
candidate's expected test and validation accuracy by ``--eval-seeds`` fresh-seed
retrains (the race's :class:`bench_budget.Retrainer`, untimed), and then compares
choice rules offline on the same data, each given the first ``S`` of the
confirmation's seeds (``--use-seeds``):

* ``search``: the best search score (one seed per configuration);
* ``estimate``: the best estimate of the search's Gaussian process (the
  shortlist's first);
* ``mean``: the best confirmation mean;
* ``library``: what :class:`vmaptune.search.confirmation.Confirmation` chooses
  (the mean, or the lower confidence bound where seeds disagree widely);
* ``lcb-local``: the mean less one standard error, the seeds' noise taken as
  the candidate's *local* noise: the root mean square of the search's residuals
  (score less estimate) of its ``--neighbours`` nearest trials in the unit cube
  (heteroscedastic: large near a cliff);
* ``posterior``: the estimate and the seeds' mean combined by their precisions
  (the estimate's standard error; the local noise over ``S``);
* ``posterior-lcb``: that combination less its standard error;
* ``posterior-global``: the combination with the Gaussian process's one noise level;
* ``estimate-lcb``: the best estimate less its standard error.

Reported per task and rule: the expected test of the chosen candidate (mean ±
standard error over search seeds), its regret against the best candidate by
expected test, and how often each rule picked a candidate whose 8 retrains
spread by more than ``UNSTABLE`` (sd of test accuracy).

    python experiments/bench_choice.py --tasks digits_cnn --seeds 8
    python experiments/bench_choice.py --analyse experiments/results/choice-cpu.json

Results go to ``experiments/results/choice-cpu.json`` (``--out``): the data of every
search, so that rules can be compared again without training (``--analyse``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_budget import Retrainer, task_problem, tune_settings

import vmaptune as vt
from vmaptune.search.confirmation import Confirmation
from vmaptune.trials.scoring import CLASSIFICATION
from vmaptune.trials.table import TrialTable

UNSTABLE = 0.04  # A candidate whose retrains' test accuracy spreads more (sd) is "unstable".
RULES = ("search", "estimate", "estimate-lcb", "mean", "library", "lcb-local", "posterior",
         "posterior-lcb", "posterior-global")


def collect(task: str, seed: int, rounds: int, confirm_seeds: int, eval_seeds: int,
            neighbours: int) -> dict:
  """One search of ``task`` and what each of its confirmation's candidates is worth."""
  problem = task_problem(task, [])
  data = problem.data(0)
  settings = {**tune_settings(problem), "rounds": rounds}
  start = time.perf_counter()
  result = vt.tune(problem.model, data, problem.space, **settings, seed=seed,
                   confirm=f"{settings['population']}x{confirm_seeds}", cache=False)
  search_s = time.perf_counter() - start
  c = result.confirmation
  table = TrialTable.concat(list(result.rounds))
  # Every trial's estimate, as the confirmation fitted it (NaN: none).
  found = [c.estimates.of(int(r), int(t)) or (math.nan, None)
           for r, t in zip(table.round, table.trial, strict=True)]
  unit = problem.space.to_unit(table.hparams)
  residual = table.score - np.array([m for m, _ in found])
  rows = {(int(r), int(t)): i for i, (r, t) in enumerate(zip(table.round, table.trial,
                                                              strict=True))}
  retrainer = Retrainer(problem, data, min_call=settings["population"])
  val, test = retrainer.scores([result.schedule(t) for t in c.candidates], eval_seeds,
                               round_index=0)
  candidates = []
  for i, trial in enumerate(c.candidates):
    row = rows[(trial.round, trial.trial)]
    mean, stderr = found[row]
    candidates.append({
        "hparams": trial.hparams_json(), "search": trial.score,
        "estimate": mean, "estimate_se": math.nan if stderr is None else stderr,
        "local_sd": local_sd(unit, residual, row, neighbours),
        "seeds": c.seed_scores[i].tolist(),
        "truth_val": float(val[i].mean()), "truth_test": float(test[i].mean()),
        "truth_test_sd": float(test[i].std(ddof=1))})
  return {"task": task, "seed": seed, "rounds": rounds, "trials": len(table.score),
          "search_s": search_s, "typical_spread": c.typical_spread, "rule": c.rule,
          "candidates": candidates}


def local_sd(unit: np.ndarray, residual: np.ndarray, row: int, count: int) -> float:
  """The root mean square residual (score less estimate) of the ``count`` trials
  nearest ``row`` in the unit cube (itself included), those with a finite residual."""
  ok = np.flatnonzero(np.isfinite(residual))
  distance = np.linalg.norm(unit[ok] - unit[row], axis=1)
  near = ok[np.argsort(distance, kind="stable")[:count]]
  return float(np.sqrt(np.mean(residual[near] ** 2)))


def choose(run: dict, rule: str, use: int) -> int:
  """The candidate ``rule`` chooses from ``run``'s data, given ``use`` seeds each."""
  cands = run["candidates"]
  seeds = np.array([[np.nan if v is None else v for v in c["seeds"][:use]] for c in cands])
  mean = seeds.mean(axis=1)
  ok = np.isfinite(mean)
  est = np.array([c["estimate"] for c in cands])
  se = np.array([c["estimate_se"] for c in cands])
  local = np.array([c["local_sd"] for c in cands])
  if rule == "search":
    value = np.array([c["search"] for c in cands])
  elif rule == "estimate":
    value = est
  elif rule == "estimate-lcb":
    value = est - se
  elif rule == "mean":
    value = mean
  elif rule == "library":
    return Replayed(tuple(), {"accuracy": seeds, "loss": np.zeros_like(seeds)}, 1, 0.0,
                    scoring=CLASSIFICATION, typical=run["typical_spread"]).chosen
  elif rule == "lcb-local":
    value = mean - local / math.sqrt(use)
  elif rule in ("posterior", "posterior-lcb", "posterior-global"):
    # The typical spread: the noise of one trial's score that the search's estimate fitted.
    noise = local if rule != "posterior-global" else np.full(len(cands), run["typical_spread"])
    w_est, w_seeds = 1 / np.maximum(se, 1e-6) ** 2, use / np.maximum(noise, 1e-6) ** 2
    value = (w_est * est + w_seeds * mean) / (w_est + w_seeds)
    if rule == "posterior-lcb":
      value = value - 1 / np.sqrt(w_est + w_seeds)
  else:
    raise ValueError(rule)
  value = np.where(ok, value, -np.inf)
  return int(np.argmax(value))


@dataclasses.dataclass(frozen=True)
class Replayed(Confirmation):
  """A confirmation replayed from saved seeds, its typical spread as the run had it."""

  typical: float = dataclasses.field(default=math.nan, kw_only=True)

  @property
  def typical_spread(self) -> float:
    return self.typical


def analyse(runs: list[dict], use_seeds: list[int]) -> dict:
  """Per task, seeds used and rule: the chosen candidates' expected test (mean, se over
  searches), regret against the best candidate, and the share chosen unstable."""
  out = {}
  for task in sorted({r["task"] for r in runs}):
    mine = [r for r in runs if r["task"] == task]
    for use in use_seeds:
      for rule in RULES:
        tests, regrets, unstable = [], [], 0
        for run in mine:
          pick = run["candidates"][choose(run, rule, use)]
          best = max(c["truth_test"] for c in run["candidates"])
          tests.append(pick["truth_test"])
          regrets.append(best - pick["truth_test"])
          unstable += pick["truth_test_sd"] > UNSTABLE
        se = statistics.stdev(tests) / math.sqrt(len(tests)) if len(tests) > 1 else None
        out[f"{task} S={use} {rule}"] = {
            "task": task, "seeds_used": use, "rule": rule, "searches": len(tests),
            "expected_test": statistics.fmean(tests), "se": se,
            "regret": statistics.fmean(regrets), "unstable": unstable}
  return out


def markdown(summary: dict) -> str:
  lines = ["| task | S | rule | expected test (%) | regret to the best candidate (points) "
           "| chose an unstable one |", "|---|---:|---|---|---:|---:|"]
  for row in summary.values():
    se = "" if row["se"] is None else f" ± {100 * row['se']:.2f}"
    lines.append(f"| {row['task']} | {row['seeds_used']} | {row['rule']} | "
                 f"{100 * row['expected_test']:.2f}{se} | {100 * row['regret']:.2f} | "
                 f"{row['unstable']} of {row['searches']} |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tasks", nargs="+", default=["digits_cnn"])
  parser.add_argument("--seeds", type=int, default=8, help="searches per task")
  parser.add_argument("--rounds", nargs="+", default=["digits_cnn=10", "digits_sgd=4"],
                      help="TASK=ROUNDS (default: the task's own rounds)")
  parser.add_argument("--confirm-seeds", type=int, default=4)
  parser.add_argument("--use-seeds", type=int, nargs="+", default=[2, 4])
  parser.add_argument("--eval-seeds", type=int, default=8)
  parser.add_argument("--neighbours", type=int, default=8)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "choice-cpu.json"))
  parser.add_argument("--analyse", metavar="RESULTS_JSON",
                      help="compare the rules on a results file's searches, train nothing")
  args = parser.parse_args(argv)
  if args.analyse:
    with open(args.analyse) as f:
      runs = json.load(f)["runs"]
    print(markdown(analyse(runs, args.use_seeds)))
    return 0
  rounds = dict(item.split("=") for item in args.rounds)
  report = {"command": " ".join(["python experiments/bench_choice.py", *sys.argv[1:]]),
            "date": datetime.date.today().isoformat(), "platform": platform.platform(),
            "runs": []}
  if os.path.exists(args.out):  # Continue: searches already there are kept.
    with open(args.out) as f:
      report["runs"] = json.load(f)["runs"]
  done = {(r["task"], r["seed"]) for r in report["runs"]}
  for task in args.tasks:
    task_rounds = int(rounds.get(task, task_problem(task, []).settings.get("rounds", 0)))
    if task_rounds < 1:
      parser.error(f"--rounds: {task} has no rounds of its own (a budget plans them); "
                   f"give {task}=ROUNDS")
    for seed in range(args.seeds):
      if (task, seed) in done:
        continue
      run = collect(task, seed, task_rounds, args.confirm_seeds, args.eval_seeds,
                    args.neighbours)
      report["runs"].append(run)
      report["summary"] = analyse(report["runs"], args.use_seeds)
      with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
      print(f"{task} seed {seed}: {run['trials']} trials, search {run['search_s']:.1f}s",
            flush=True)
  print(markdown(report["summary"]))
  return 0


if __name__ == "__main__":
  sys.exit(main())
