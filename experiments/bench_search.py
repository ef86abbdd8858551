"""Search quality against Optuna TPE at equal cost: test accuracy, optimism, wall time.

On each task and seed, vmaptune's default (``--default``, "density/random")
runs first; its measured wall time (the whole ``vt.tune`` call: checks,
compilation, rounds, confirmation) and lane-epochs (epochs trained, summed
over trials, confirmation included) are the budget every other method gets
on that task and seed, in two tables:

* equal wall time: a vmaptune method runs the rounds predicted to take the
  default's wall time (from its setup, first-round and later-round times on the
  previous seed; on the first, in a run with the task's rounds), or reuses a run
  of that seed that took within 15% of it; the outside baseline starts trials
  while the next one and its retrains still fit;
* equal lane-epochs: as many rounds (or trials) as fit the default's lane-epochs.

On a CPU, compilation (the first round's program, the confirmation's) is much of
a small run's wall time; the table's wall-time column says what each method took.

Methods: every sampler with the random and halving strategies, population-based
training (the default sampler), vmaptune's Optuna sampler, and the outside
baseline ``tpe-sequential``: Optuna's TPE (``TPESampler(seed=seed)``) driving a
sequential trainer, one configuration at a time. It is vmaptune's own one-lane
trainer (``lax.scan`` inside ``jit``, compiled once), with the same model, data,
AdamW, schedule and epochs, so it computes what a lane computes; trial ``n``
trains with the keys of round ``n``. It chooses its best trial by validation
accuracy; its optimism is that accuracy minus the mean validation accuracy of
the chosen configuration retrained with 4 fresh seeds, which count in its cost
(vmaptune's confirmation measures its own optimism the same way). A vmaptune
run without a confirmation has its optimism measured by those 4 retrains too,
outside its cost. Test accuracy: the chosen configuration's final fit (the test
split's one read).

    python experiments/bench_search.py --quick   # 2 seeds; default, narrow/random, TPE; < 5 min
    python experiments/bench_search.py           # 5 seeds, every method; ~45 min on 2 cores
    python experiments/bench_search.py --markdown experiments/results/search-cpu.json

Results go to ``experiments/results/search-<platform>[-quick].json`` (``--out``).
Mean ± sample standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import datetime
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

import vmaptune as vt
from vmaptune.rundir import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # The shared problems, also when this file is loaded by path.
  sys.path.insert(0, HERE)
from problems import (  # noqa: E402
    SEARCH_PROBLEMS,
    SUPPORTS_CONFIRM,
    OneLane,
    Problem,
    recent_pace,
    tpe_search,
)

TASKS = SEARCH_PROBLEMS
# --quick: smaller populations and epoch budgets (still enough for halving and PBT).
QUICK_SETTINGS = {
    "digits_mlp": dict(population=32, rounds=3, epochs=6),
    "digits_cnn": dict(population=12, rounds=2, epochs=3),
    "teacher_mlp": dict(population=32, rounds=3, epochs=4),
    "teacher_6p": dict(population=32, rounds=3, epochs=4),
}

BASELINE = "tpe-sequential"
SAMPLERS = ("narrow", "density", "evolution")
# A method's name -> its vt.tune settings (None: the outside baseline).
METHODS: dict[str, dict | None] = {
    **{f"{s}/{t}": dict(sampler=s, strategy=t) for s in SAMPLERS for t in ("random", "halving")},
    "pbt": dict(strategy="pbt"),
    "optuna": dict(sampler="optuna", strategy="random"),
    BASELINE: None,
}
QUICK_METHODS = ("narrow/random", BASELINE)
TABLES = {"equal_wall": "equal wall time", "equal_lane_epochs": "equal lane-epochs"}
RETRAIN_SEEDS = 4  # Fresh seeds the chosen configuration is retrained with to measure optimism.
# A run already made for a seed counts as taking the default's wall time when it took
# within this fraction of it (timings of the same run vary about as much).
WALL_TOLERANCE = 0.15
MATCH_POINTS = 0.5  # "Matches TPE": at most this many points of test accuracy below it.
BEAT_POINTS = 1.0  # On the 6-parameter task: at least this many points above it.
MAX_OPTIMISM_POINTS = 1.0
SUMMARY_KEYS = ("test_accuracy", "val_accuracy", "optimism", "wall_s", "lane_epochs",
                "configurations", "rounds")
# A compilation cache for what no budget counts (final fits, retrains that measure a
# vmaptune run's optimism): each task compiles those once, not once per run.
UNTIMED_CACHE: list[str] = []


@contextlib.contextmanager
def untimed() -> Iterator[None]:
  """Work outside every budget: compiled through ``UNTIMED_CACHE`` if set."""
  if not UNTIMED_CACHE:
    yield
    return
  with vt.lanes.compilation.persistent_cache(UNTIMED_CACHE[0]):
    yield


@dataclasses.dataclass(frozen=True)
class Budget:
  """What a method may spend on a task and seed: the default's measured cost."""
  wall_s: float | None = None
  lane_epochs: int | None = None


def run_tpe_sequential(problem: Problem, seed: int, budget: Budget) -> dict:
  """Optuna TPE driving the sequential trainer until ``budget`` is spent, the
  retrains that measure its optimism included."""
  data = problem.data(seed)
  epochs = problem.settings["epochs"]
  start = time.perf_counter()
  lane = OneLane(problem, data, seed)

  def spent(times: list[float]) -> bool:
    """The next trial and the retrains would overrun the budget."""
    if budget.lane_epochs is not None and \
        (len(times) + 1 + RETRAIN_SEEDS) * epochs > budget.lane_epochs:
      return True
    return budget.wall_s is not None and \
        time.perf_counter() - start + recent_pace(times) * (1 + RETRAIN_SEEDS) > budget.wall_s

  found = tpe_search(lane, problem.space, seed, spent)
  times = found.times
  if found.best is None:
    return {"test_accuracy": math.nan, "val_accuracy": math.nan, "optimism": math.nan,
            "wall_s": time.perf_counter() - start, "lane_epochs": len(times) * epochs,
            "configurations": len(times), "rounds": None, "chosen": None}
  accuracy, hparams, params, _ = found.best
  retrained = lane.retrained_accuracy(hparams, RETRAIN_SEEDS)
  wall = time.perf_counter() - start
  with untimed():
    test_accuracy = lane.test_accuracy(params, data)
  return {"test_accuracy": test_accuracy, "val_accuracy": accuracy,
          "optimism": accuracy - retrained, "optimism_from": "retrains",
          "wall_s": wall, "lane_epochs": (len(times) + RETRAIN_SEEDS) * epochs,
          "configurations": len(times), "rounds": None, "chosen": hparams}


def run_vmaptune(problem: Problem, method: dict, seed: int, rounds: int,
                 confirm: str | None) -> dict:
  """One ``vt.tune`` run of ``method`` with ``rounds`` rounds, timed, then its final fit."""
  data = problem.data(seed)
  settings = {**problem.settings, **method, "rounds": rounds, "seed": seed}
  if confirm is not None:
    settings["confirm"] = confirm
  start = time.perf_counter()
  result = vt.tune(problem.model, data, problem.space, **settings)
  wall = time.perf_counter() - start
  confirmation = getattr(result, "confirmation", None)
  best = result.best
  search_lane_epochs = sum(r.lane_epochs for r in result.rounds)
  confirm_lane_epochs = int(confirmation.lane_epochs) if confirmation is not None else 0
  if confirmation is not None:
    optimism, optimism_from = float(confirmation.optimism), "confirmation"
  else:  # Measured as the baseline's is, outside the method's cost.
    with untimed():
      lane = OneLane(problem, problem.data(seed), seed)
      optimism = best.val_accuracy - lane.retrained_accuracy(result.schedule(best),
                                                              RETRAIN_SEEDS)
    optimism_from = "retrains"
  with untimed():
    final = result.final_fit()
  return {"test_accuracy": final.test_accuracy, "val_accuracy": best.val_accuracy,
          "optimism": optimism, "optimism_from": optimism_from, "wall_s": wall,
          "lane_epochs": search_lane_epochs + confirm_lane_epochs,
          "configurations": sum(r.configurations for r in result.rounds), "rounds": rounds,
          "round_wall_s": [r.wall_s for r in result.rounds],
          "first_round_compile_s": result.rounds[0].compile_s + result.rounds[0].trace_s,
          "round_lane_epochs": [r.lane_epochs for r in result.rounds],
          "confirm_lane_epochs": confirm_lane_epochs,
          "confirm_wall_s": None if confirmation is None else confirmation.wall_s,
          "chosen": best.hparams}


def rounds_for(run: dict, budget: Budget, cap: int) -> int:
  """The rounds (1 to ``cap``) whose predicted cost is nearest ``budget``, from a run's
  setup time (checks, confirmation), its first round (compilation) and later rounds."""
  walls, per_round = run["round_wall_s"], run["round_lane_epochs"]
  if budget.wall_s is not None:
    fixed = run["wall_s"] - sum(walls)
    later = (float(np.mean(walls[1:])) if len(walls) > 1
             else max(walls[0] - run["first_round_compile_s"], 1e-3))
    rounds = 1 + round((budget.wall_s - fixed - walls[0]) / later)
  else:
    rounds = round((budget.lane_epochs - run["confirm_lane_epochs"]) / float(np.mean(per_round)))
  return int(min(max(rounds, 1), cap))


def summarize(runs: list[dict]) -> dict:
  """Mean and sample standard deviation over seeds of each figure (NaN-free ones)."""
  out = {}
  for key in SUMMARY_KEYS:
    values = [r[key] for r in runs if r.get(key) is not None and math.isfinite(r[key])]
    out[key] = {"mean": float(np.mean(values)) if values else None,
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
  return out


def targets(summary: dict[str, dict], default: str, six_parameters: bool) -> dict:
  """The issue's targets on one task (equal wall time): the default at most
  ``MATCH_POINTS`` below TPE-sequential (``BEAT_POINTS`` above it on the 6-parameter
  task), and the default's mean optimism at most ``MAX_OPTIMISM_POINTS``."""
  ours = summary.get(default)
  if ours is None:
    return {}
  checks = {}
  tpe = summary.get(BASELINE)
  if tpe is not None and ours["test_accuracy"]["mean"] is not None \
      and tpe["test_accuracy"]["mean"] is not None:
    gap = 100 * (ours["test_accuracy"]["mean"] - tpe["test_accuracy"]["mean"])
    need = BEAT_POINTS if six_parameters else -MATCH_POINTS
    checks["vs_tpe_sequential"] = {"gap_points": gap, "needed_points": need, "met": gap >= need}
  if ours["optimism"]["mean"] is not None:
    points = 100 * ours["optimism"]["mean"]
    checks["optimism"] = {"points": points, "max_points": MAX_OPTIMISM_POINTS,
                          "met": points <= MAX_OPTIMISM_POINTS}
  return checks


def markdown_tables(report: dict) -> str:
  """The two tables (equal wall time, equal lane-epochs): tasks x methods."""
  def cell(s: dict, key: str, scale: float = 1.0, fmt: str = ".2f", sign: str = "") -> str:
    if s[key]["mean"] is None:
      return "-"
    return f"{scale * s[key]['mean']:{sign}{fmt}} ± {scale * s[key]['sd']:{fmt}}"

  blocks = []
  for table, title in TABLES.items():
    lines = [f"**{title}** (budget: {report['default']}'s, per task and seed)", "",
             "| task | method | test acc % | optimism (points) | wall s | lane-epochs | "
             "configurations |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, entry in report["tasks"].items():
      for method, s in entry[table]["summary"].items():
        lines.append(f"| {name} | {method} | {cell(s, 'test_accuracy', 100)} | "
                     f"{cell(s, 'optimism', 100, sign='+')} | {cell(s, 'wall_s', fmt='.1f')} | "
                     f"{cell(s, 'lane_epochs', fmt='.0f')} | "
                     f"{s['configurations']['mean']:.0f} |")
    blocks.append("\n".join(lines))
  return "\n\n".join(blocks)


def describe(run: dict) -> str:
  rounds = "" if run["rounds"] is None else f"rounds {run['rounds']:2d} "
  return (f"{rounds}test {run['test_accuracy']:.4f} val {run['val_accuracy']:.4f} "
          f"optimism {100 * run['optimism']:+.2f} wall {run['wall_s']:6.1f}s "
          f"lane-epochs {run['lane_epochs']:6d} configurations {run['configurations']}")


def uses_optuna(method: str) -> bool:
  settings = METHODS[method]
  return settings is None or settings.get("sampler") == "optuna"


def available(method: str) -> str | None:
  """Why ``method`` cannot run here (``None``: it can)."""
  settings = METHODS[method]
  if uses_optuna(method):
    try:
      import optuna  # noqa: F401
    except ImportError:
      return "optuna is not installed (pip install -e '.[bench]')"
  if settings is not None and "sampler" in settings:
    try:
      vt.samplers.parse(settings["sampler"])
    except ValueError as e:
      return str(e)
  return None


def run_task(problem: Problem, methods: list[str], default: str, seeds: int,
             confirm: str | None, cap_factor: int, skipped: dict[str, str],
             log: Callable[[str], None]) -> dict:
  """Every method on one task, seed by seed, at the default's wall time and lane-epochs.

  A vmaptune method's rounds for each budget are predicted from its cost on the
  previous seed (on the first seed, from a run with the task's rounds); a run serves
  both tables when they predict the same rounds, or when the run that fits the
  lane-epochs took within ``WALL_TOLERANCE`` of the default's wall time.
  """
  base_rounds = problem.settings["rounds"]
  runs: dict[str, dict[str, list]] = {t: {m: [] for m in methods} for t in TABLES}
  profiles: dict[str, dict] = {}  # method -> the run its rounds are predicted from
  budgets = []
  for seed in range(seeds):
    ours = run_vmaptune(problem, METHODS[default], seed, base_rounds, confirm)
    budget = {"equal_wall": Budget(wall_s=ours["wall_s"]),
              "equal_lane_epochs": Budget(lane_epochs=ours["lane_epochs"])}
    budgets.append({"seed": seed, "wall_s": ours["wall_s"], "lane_epochs": ours["lane_epochs"]})
    log(f"  seed {seed} {default:18s} {'(budget)':18s} {describe(ours)}")
    for table in TABLES:
      runs[table][default].append({"seed": seed, **ours})
    for method in methods:
      if method == default or method in skipped:
        continue
      done: dict[int, dict] = {}  # rounds -> this seed's run, shared by the two tables
      # Lane-epochs first: a run that fits them may also be near enough the wall time.
      for table in reversed(TABLES):
        title = TABLES[table]
        try:
          if METHODS[method] is None:
            run = run_tpe_sequential(problem, seed, budget[table])
          else:
            if method not in profiles:
              done[base_rounds] = profiles[method] = run_vmaptune(
                  problem, METHODS[method], seed, base_rounds, confirm)
            rounds = rounds_for(profiles[method], budget[table], cap_factor * base_rounds)
            wall = budget[table].wall_s
            off = {} if wall is None else {r: abs(d["wall_s"] - wall) for r, d in done.items()}
            near = [r for r, seconds in off.items() if seconds <= WALL_TOLERANCE * wall]
            if near:
              rounds = min(near, key=off.get)
            if rounds not in done:
              done[rounds] = run_vmaptune(problem, METHODS[method], seed, rounds, confirm)
            run = done[rounds]
        except Exception as e:  # Noted, and the other methods run: a long run is not lost.
          skipped[method] = f"{type(e).__name__}: {e}"
          log(f"  {method}: skipped from now on ({skipped[method]})")
          break
        runs[table][method].append({"seed": seed, **run})
        log(f"  seed {seed} {method:18s} {f'({title})':18s} {describe(run)}")
      if done:  # Predict the next seed from this one's run with the most rounds.
        profiles[method] = done[max(done)]
  tables = {}
  for table in TABLES:
    kept = {m: rs for m, rs in runs[table].items() if rs and m not in skipped}
    summary = {m: summarize(rs) for m, rs in kept.items()}
    tables[table] = {"runs": kept, "summary": summary}
  return {"model": repr(problem.model), "data": repr(problem.data(0)),
          "space": problem.space.to_dict(), "settings": problem.settings, "budgets": budgets,
          **tables, "targets": targets(tables["equal_wall"]["summary"], default,
                                       len(problem.space) >= 6)}


def main(argv: list[str] | None = None) -> int:
  # One CPU device per core, as tune asks, before JAX starts.
  vt.lanes.devices.configure_cpu_devices()
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help=f"2 seeds, {', '.join(QUICK_METHODS)} and the default, smaller "
                           "settings: under 5 minutes on 2 CPU cores")
  parser.add_argument("--seeds", type=int, help="seeds per task (default 5, quick 2)")
  parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS))
  parser.add_argument("--methods", nargs="+", choices=list(METHODS),
                      help="methods to compare with the default (default: all; quick: "
                           f"{', '.join(QUICK_METHODS)})")
  parser.add_argument("--default", default="density/random",
                      choices=[m for m in METHODS if m != BASELINE],
                      help="the method whose measured cost is every method's budget")
  parser.add_argument("--confirm", help="every vmaptune method's confirm setting, e.g. off or "
                                        "16x4 (default: the library's)")
  parser.add_argument("--max-rounds-factor", type=int, default=4,
                      help="a method runs at most this many times the task's rounds")
  parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                      help="override a setting of every task, e.g. population=8")
  parser.add_argument("--markdown", "--table", metavar="RESULTS_JSON",
                      help="print an earlier run's tables and exit")
  parser.add_argument("--out", help="results JSON (default experiments/results/"
                                    "search-<platform>[-quick].json)")
  args = parser.parse_args(argv)
  if args.markdown:
    with open(args.markdown) as f:
      print(markdown_tables(json.load(f)))
    return 0
  if args.confirm is not None and not SUPPORTS_CONFIRM:
    parser.error("--confirm: this vmaptune has no confirm setting")
  seeds = args.seeds or (2 if args.quick else 5)
  methods = list(args.methods or (QUICK_METHODS if args.quick else METHODS))
  methods = [args.default] + [m for m in methods if m != args.default]
  skipped = {m: why for m in methods if (why := available(m)) is not None}
  if args.default in skipped:
    print(f"the default {args.default} cannot run: {skipped[args.default]}; choose another "
          "with --default", file=sys.stderr)
    return 2
  for method, why in skipped.items():
    print(f"{method}: skipped ({why})", flush=True)
  if any(m not in skipped and uses_optuna(m) for m in methods):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Not a line per study.
  overrides = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
  platform = jax.default_backend()
  report: dict[str, Any] = {
      "command": " ".join(["python", "experiments/bench_search.py"]
                          + (sys.argv[1:] if argv is None else argv)),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "platform": platform, "devices": len(jax.devices()), "seeds": seeds,
      "default": args.default, "confirm": args.confirm, "methods": methods,
      "retrain_seeds": RETRAIN_SEEDS, "wall_tolerance": WALL_TOLERANCE, "complete": False,
      "tasks": {}, "skipped": skipped}
  out = args.out or os.path.join(HERE, "results",
                                 f"search-{platform}{'-quick' if args.quick else ''}.json")
  start = time.perf_counter()
  log = lambda line: print(line, flush=True)
  UNTIMED_CACHE[:] = [tempfile.mkdtemp(prefix="bench-search-untimed-")]
  try:
    for name in args.tasks or list(TASKS):
      problem = TASKS[name]
      settings = {**problem.settings, **(QUICK_SETTINGS[name] if args.quick else {}),
                  **overrides}
      problem = problem.but(settings=settings)
      log(f"\n{name}: {settings}, {len(problem.space)} hyperparameters, {seeds} seeds "
          f"[{time.perf_counter() - start:.0f}s]")
      report["tasks"][name] = run_task(problem, methods, args.default, seeds, args.confirm,
                                       args.max_rounds_factor, skipped, log)
      for check, value in report["tasks"][name]["targets"].items():
        log(f"  target {check}: {value}")
      report["wall_s"] = time.perf_counter() - start
      write_json(out, report)  # After every task: an interrupted run keeps what it did.
  finally:
    shutil.rmtree(UNTIMED_CACHE.pop(), ignore_errors=True)
  report["complete"] = True
  print("\n" + markdown_tables(report))
  print(f"\n{report['wall_s']:.0f}s; results written to {write_json(out, report)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
