"""Strategies side by side: best validation accuracy and test accuracy against cost.

For each workload and seed, runs the same tuning problem (model, data, space,
population, rounds, epoch budget) with every strategy, then reports, averaged
over seeds: the best validation accuracy found, the test accuracy of the
chosen configuration (its final fit: the test split's one read), the
lane-epochs spent (epochs trained, summed over all trials) and wall time.

    python experiments/bench_strategies.py --quick     # digits MLP, 2 seeds, a few minutes
    python experiments/bench_strategies.py             # the README's table, 5 seeds

The issue's targets are checked against random narrowing with the full
budget: successive halving within 0.5 points of its best validation accuracy
on at most a third of its lane-epochs; population-based training at least as
good at equal lane-epochs. Results go to
``experiments/results/strategies-<platform>.json``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import os
import sys
import time
from typing import Any

import jax
import numpy as np

import vmaptune as vt
from vmaptune.rundir import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # The shared problems, also when this file is loaded by path.
  sys.path.insert(0, HERE)
from problems import STRATEGY_PROBLEMS as PROBLEMS  # noqa: E402
from problems import Problem  # noqa: E402

STRATEGIES = ("random", "halving", "hyperband", "pbt")


def run_one(problem: Problem, strategy: str, seed: int) -> dict:
  data = problem.data(seed)
  start = time.perf_counter()
  result = vt.tune(problem.model, data, problem.space, strategy=strategy, seed=seed,
                   **problem.settings)
  final = result.final_fit()
  wall = time.perf_counter() - start
  return {"best_val_accuracy": result.best.val_accuracy, "test_accuracy": final.test_accuracy,
          "lane_epochs": sum(r.lane_epochs for r in result.rounds),
          "trials": sum(r.num_trials for r in result.rounds),
          "programs_compiled": sum(r.compiles for r in result.rounds), "wall_s": wall,
          "chosen": result.best.hparams, "lineage_pieces": len(final.schedule)}


def summarize(runs: list[dict]) -> dict:
  keys = ("best_val_accuracy", "test_accuracy", "lane_epochs", "wall_s", "programs_compiled")
  return {k: {"mean": float(np.mean([r[k] for r in runs])),
              "std": float(np.std([r[k] for r in runs]))} for k in keys}


def targets(summary: dict[str, dict]) -> dict:
  base = summary["random"]
  checks = {}
  if "halving" in summary:
    sh = summary["halving"]
    gap = 100 * (base["best_val_accuracy"]["mean"] - sh["best_val_accuracy"]["mean"])
    share = sh["lane_epochs"]["mean"] / base["lane_epochs"]["mean"]
    checks["halving"] = {"val_gap_points": gap, "lane_epoch_share": share,
                         "met": gap <= 0.5 and share <= 1 / 3}
  if "pbt" in summary:
    pbt = summary["pbt"]
    gap = 100 * (base["best_val_accuracy"]["mean"] - pbt["best_val_accuracy"]["mean"])
    share = pbt["lane_epochs"]["mean"] / base["lane_epochs"]["mean"]
    checks["pbt"] = {"val_gap_points": gap, "lane_epoch_share": share, "met": gap <= 0}
  return checks


def markdown_table(report: dict) -> str:
  lines = ["| workload | strategy | best val acc | test acc | lane-epochs | wall s |",
           "|---|---|---:|---:|---:|---:|"]
  for name, entry in report["problems"].items():
    for strategy, s in entry["summary"].items():
      lines.append(
          f"| {name} | {strategy} | {s['best_val_accuracy']['mean']:.4f} ± "
          f"{s['best_val_accuracy']['std']:.4f} | {s['test_accuracy']['mean']:.4f} ± "
          f"{s['test_accuracy']['std']:.4f} | {s['lane_epochs']['mean']:.0f} | "
          f"{s['wall_s']['mean']:.1f} |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="digits MLP only, 2 seeds")
  parser.add_argument("--seeds", type=int, help="seeds per problem (default 5, quick 2)")
  parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS))
  parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
  parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                      help="override a problem setting for every problem, e.g. rounds=1")
  parser.add_argument("--table", metavar="RESULTS_JSON", help="print an earlier run's table")
  parser.add_argument("--out")
  args = parser.parse_args(argv)
  if args.table:
    import json
    with open(args.table) as f:
      print(markdown_table(json.load(f)))
    return 0
  seeds = args.seeds or (2 if args.quick else 5)
  problems = args.problems or (["digits_mlp"] if args.quick else list(PROBLEMS))
  overrides = dict(item.split("=", 1) for item in args.set)
  platform = jax.devices()[0].platform
  report: dict[str, Any] = {
      "command": " ".join(["python", "experiments/bench_strategies.py"]
                          + (sys.argv[1:] if argv is None else argv)),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "platform": platform, "devices": len(jax.devices()), "seeds": seeds, "problems": {}}
  for name in problems:
    problem = PROBLEMS[name]
    if overrides:
      settings = {**problem.settings,
                  **{k: ast.literal_eval(v) for k, v in overrides.items()}}
      problem = dataclasses.replace(problem, settings=settings)
    runs = {s: [] for s in args.strategies}
    print(f"\n{name}: {problem.settings}, {seeds} seeds", flush=True)
    for seed in range(seeds):
      for strategy in args.strategies:
        r = run_one(problem, strategy, seed)
        runs[strategy].append(r)
        print(f"  seed {seed} {strategy:10s} val {r['best_val_accuracy']:.4f} "
              f"test {r['test_accuracy']:.4f} lane-epochs {r['lane_epochs']:6d} "
              f"wall {r['wall_s']:6.1f}s programs {r['programs_compiled']}", flush=True)
    summary = {s: summarize(rs) for s, rs in runs.items()}
    report["problems"][name] = {"model": repr(problem.model), "settings": problem.settings,
                                "runs": runs, "summary": summary,
                                "targets": targets(summary) if "random" in summary else {}}
    for check, value in report["problems"][name]["targets"].items():
      print(f"  target {check}: {value}", flush=True)
  print("\n" + markdown_table(report))
  suffix = "-quick" if args.quick else ""
  out = args.out or os.path.join(HERE, "results", f"strategies-{platform}{suffix}.json")
  print(f"\nresults written to {write_json(out, report)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
