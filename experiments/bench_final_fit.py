"""The final fit under a budget, alone or in a round's programs, side by side.

    python experiments/bench_final_fit.py                 # writes results/final-fit-cpu.json
    python experiments/bench_final_fit.py --tasks digits_mlp --repeats 1 --out /tmp/ff.json

Each run is a fresh process with no persistent compilation cache (every program compiles, as
a researcher's first run does): ``vt.tune`` of a benchmark task (``experiments/problems.py``)
with ``budget="1h"`` capped at ``--rounds`` rounds (so both ways train the same rounds), no
confirmation, then ``final_fit()``. ``alone`` makes the final fit compile one-lane programs
after the first round (as every run did before the choice existed); ``lanes`` makes it train
lane 0 of a round's population in the round's programs; ``auto`` lets the run choose
(``Costs.lanes_cheaper``). The two ways alternate, so a machine that slows down or speeds up
weighs on both. Reported per task and way: the whole call's wall time (``tune`` and the final
fit), its final fit's share, and the test accuracy (equal within float rounding: the same
configuration, the same keys).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WAYS = ("alone", "lanes", "auto")
# The share of the rounds' compiling at which a run guesses the one-lane compile: 0 makes
# a round's training never cheaper (alone), a huge one always (lanes).
FORCED_SHARE = {"alone": 0.0, "lanes": 1e9}


def child(task: str, way: str, rounds: int) -> dict:
  """One budgeted run and its final fit in this process; what it spent."""
  sys.path.insert(0, HERE)
  import problems

  import vmaptune as vt
  if way in FORCED_SHARE:
    vt.search.budget.FINAL_FIT_COMPILE_SHARE = FORCED_SHARE[way]
  problem = problems.SEARCH_PROBLEMS[task]
  data = problem.data(0)
  settings = {**problem.settings, "rounds": rounds}
  start = time.perf_counter()
  result = vt.tune(problem.model, data, problem.space, **settings, budget="1h", seed=0,
                   cache=False, confirm="off")
  tuned = time.perf_counter() - start
  final = result.final_fit()
  wall = time.perf_counter() - start
  return {"task": task, "way": way, "wall_s": wall, "final_s": wall - tuned,
          "rounds": len(result.rounds), "in_lanes": final.in_lanes,
          "test_accuracy": final.test_accuracy}


def run_once(task: str, way: str, rounds: int) -> dict:
  """:func:`child` in a fresh process."""
  done = subprocess.run([sys.executable, __file__, "--child", task, way, "--rounds", str(rounds)],
                        capture_output=True, text=True, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict]) -> list[dict]:
  """Per task and way: mean wall and final-fit seconds, and the wall's ratio to alone's."""
  rows = []
  for task in dict.fromkeys(r["task"] for r in runs):
    mine = [r for r in runs if r["task"] == task]
    alone = [r["wall_s"] for r in mine if r["way"] == "alone"]
    for way in dict.fromkeys(r["way"] for r in mine):
      these = [r for r in mine if r["way"] == way]
      wall = statistics.mean(r["wall_s"] for r in these)
      rows.append({"task": task, "way": way, "runs": len(these), "wall_s": round(wall, 2),
                   "final_s": round(statistics.mean(r["final_s"] for r in these), 2),
                   "in_lanes": sorted({r["in_lanes"] for r in these}),
                   "to_alone": round(wall / statistics.mean(alone), 3) if alone else None,
                   "test_accuracy": sorted({round(r["test_accuracy"], 5) for r in these})})
  return rows


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tasks", nargs="+", default=["digits_cnn", "digits_mlp"])
  parser.add_argument("--ways", nargs="+", choices=WAYS, default=["lanes", "alone"])
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=os.path.join(HERE, "results", "final-fit-cpu.json"))
  parser.add_argument("--child", nargs=2, metavar=("TASK", "WAY"), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(child(*args.child, args.rounds)))
    return 0
  runs = []
  for repeat in range(args.repeats):
    for task in args.tasks:
      for way in args.ways:
        runs.append({**run_once(task, way, args.rounds), "repeat": repeat})
        print(json.dumps(runs[-1]), flush=True)
  report = {"command": " ".join([os.path.basename(__file__)] + (argv or sys.argv[1:])),
            "date": time.strftime("%Y-%m-%d"),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "summary": summarize(runs), "runs": runs}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=1)
  for row in report["summary"]:
    print(row)
  return 0


if __name__ == "__main__":
  sys.exit(main())
