"""How closely a run keeps to its wall-time budget, the final fit included, on a
quiet machine and on a busy one.

    python experiments/bench_budget_adherence.py        # writes results/budget-adherence-cpu.json
    python experiments/bench_budget_adherence.py --budgets 20 --tasks tiny --busy 0 \
        --out /tmp/b.json

Each task is tuned with ``budget=B`` for every budget B (no other change to its
settings), then its chosen configuration is refit; the whole is timed and
reported as a share of B (the target band: 90% to 105% for budgets of 20 s and
more), with the rounds run, the plan's estimates and what the final fit took.
Every run is made twice: alone, and with ``--busy`` processes spinning on the
CPU for its whole length (as other test workers or users do on a shared
machine; 0 skips it). The persistent compilation cache is off, so every run
compiles: the worst case.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Iterator

import vmaptune as vt

SPACE = vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0), weight_decay=vt.LogUniform(1e-8, 1e-1))


def tasks() -> dict[str, dict]:
  """name -> tune's arguments: a tiny MLP (rounds of hundredths of a second) and
  the default experiment's model and sizes (rounds of seconds)."""
  digits = vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0)
  return {
      "tiny": dict(model=vt.models.MLP(hidden=(16,)), data=digits, space=SPACE, population=8,
                   epochs=2, batch_size=32),
      "default": dict(model=vt.models.MLP(hidden=(128,)), data=digits, space=SPACE,
                      population=256, epochs=20, batch_size=64),
  }


def _spin() -> None:
  while True:
    pass


@contextlib.contextmanager
def busy(processes: int) -> Iterator[None]:
  """``processes`` processes spinning on the CPU inside the block."""
  spinning = [multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
              for _ in range(processes)]
  for p in spinning:
    p.start()
  try:
    yield
  finally:
    for p in spinning:
      p.terminate()
      p.join()


def run(task: dict, budget: float, spinning: int) -> dict:
  """One budgeted run and its final fit, timed, with ``spinning`` busy processes."""
  with busy(spinning):
    start = time.perf_counter()
    try:
      result = vt.tune(**task, budget=budget, rounds=None, seed=0, cache=False)
    except vt.errors.BudgetError as e:  # Refused once the first round measured an epoch.
      return {"budget_s": budget, "busy_processes": spinning, "refused": str(e),
              "spent_s": round(time.perf_counter() - start, 2)}
    searched = time.perf_counter() - start
    result.final_fit()
    spent = time.perf_counter() - start
  compiling = sum(r.compile_s + r.trace_s for r in result.rounds)
  return {"budget_s": budget, "busy_processes": spinning, "spent_s": round(spent, 2),
          "share": round(spent / budget, 3), "rounds": len(result.rounds),
          "search_s": round(searched, 2), "final_fit_s": round(spent - searched, 2),
          "rounds_compiling_s": round(compiling, 2), "plan": result.budget.to_json()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--budgets", type=float, nargs="+", default=[20, 40, 80])
  parser.add_argument("--tasks", nargs="+", default=["tiny", "default"])
  parser.add_argument("--busy", type=int, default=2,
                      help="processes spinning on the CPU while each run is made again "
                           "(0: each once, quiet)")
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "budget-adherence-cpu.json"))
  args = parser.parse_args()
  known = tasks()
  results = {"command": "python experiments/bench_budget_adherence.py --budgets "
                        + " ".join(f"{b:g}" for b in args.budgets)
                        + " --tasks " + " ".join(args.tasks) + f" --busy {args.busy}",
             "machine": f"{platform.machine()}, {os.cpu_count()} cores",
             "date": time.strftime("%Y-%m-%d"), "runs": {}}
  for name in args.tasks:
    results["runs"][name] = []
    for budget in args.budgets:
      for spinning in sorted({0, args.busy}):
        found = run(known[name], budget, spinning)
        results["runs"][name].append(found)
        outcome = (f"refused after {found['spent_s']}s" if "refused" in found else
                   f"{found['spent_s']}s ({100 * found['share']:.0f}%), {found['rounds']} "
                   f"rounds, final fit {found['final_fit_s']}s")
        print(f"{name} budget {budget:g}s, {spinning} busy: {outcome}", flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=1)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
