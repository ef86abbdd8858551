"""Choosing a configuration by its denoised estimate instead of its raw score: regret and fit time.

Synthetic searches, no training: each trial's score is a known function of its
configuration (its *true* value) plus Gaussian noise, the noise a seed's luck
adds to one validation score. Per problem, noise level, design and seed, the
configuration chosen by each rule is compared by its true value:

* ``raw``: the best score (what ranking alone chooses);
* ``estimate``: the best estimate of :func:`vmaptune.trials.estimate.estimate`;
* ``lcb``: the best lower confidence bound (estimate minus one standard error);
* ``kernel``: the best Nadaraya-Watson kernel average (a Gaussian kernel in the
  unit cube, one bandwidth chosen by leave-one-out error): the alternative
  to the Gaussian process, measured here to choose between them.

Regret: the best true value among the search's trials minus the chosen one's
(accuracy units; 0.01 is a point). Rank correlation (Spearman) of each rule's
values with the truth over every trial. ``within_1se``: the share of trials whose
true value lies within one standard error of the estimate (about 0.68 if the
standard errors are right).

Problems (accuracy-like, peak 0.95), over the spaces a search would use:

* ``bowl-2d``: a tilted quadratic bowl in log10 learning rate x log10 weight decay;
* ``bowl-6d``: the same and four more parameters (Adam's b1 and b2, label
  smoothing, dropout), three of them mattering a little, one not at all;
* ``cliff-2d``: a bowl whose accuracy falls to chance (0.1) half a decade of
  learning rate above its best, as a network's does when training blows up.

Designs: ``uniform`` (every trial drawn over the whole space) and ``narrowed``
(four rounds, each drawn in the space narrowed around the best 20% of raw scores so far,
with a margin of 10%, as the narrow sampler does).
Fit time: one ``estimate`` call on ``uniform`` trials of the bowls (the median
of three, single-threaded linear algebra as the library runs it).

    python experiments/bench_estimate.py            # 20 seeds, 5 min on 2 busy cores
    python experiments/bench_estimate.py --quick    # 3 seeds, one noise level, 30 s
    python experiments/bench_estimate.py --markdown experiments/results/estimate-cpu.json

Results go to ``experiments/results/estimate-cpu[-quick].json`` (``--out``).
Means ± standard errors over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import spearmanr

import vmaptune as vt
from vmaptune.rundir import write_json
from vmaptune.trials.estimate import estimate, order_by
from vmaptune.trials.scoring import CLASSIFICATION
from vmaptune.trials.table import TrialTable

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = ("raw", "estimate", "lcb", "kernel")
NOISES = (0.005, 0.01, 0.02)
DESIGNS = ("uniform", "narrowed")
ROUNDS, KEEP, MARGIN = 4, 0.2, 0.1  # The narrowed design's rounds.
TIMING_SIZES = (200, 1000, 4000)

WIDE = dict(learning_rate=vt.LogUniform(1e-5, 1.0), weight_decay=vt.LogUniform(1e-8, 1e-1))
SIX = vt.Space(**WIDE, b1=vt.Uniform(0.5, 0.99), b2=vt.Uniform(0.9, 0.9999),
               label_smoothing=vt.Uniform(0.0, 0.3), dropout_rate=vt.Uniform(0.0, 0.5))


def bowl(hparams: dict[str, np.ndarray]) -> np.ndarray:
  """0.95 at learning rate 10^-2.5 and weight decay 10^-4, falling as a tilted bowl."""
  x = np.log10(hparams["learning_rate"]) + 2.5
  w = np.log10(hparams["weight_decay"]) + 4.0
  return 0.95 - (0.03 * x**2 + 0.01 * x * w + 0.008 * w**2)


def bowl6(hparams: dict[str, np.ndarray]) -> np.ndarray:
  """:func:`bowl`, less small quadratic terms in b1, label smoothing and dropout (b2 idle)."""
  unit = SIX.to_unit(hparams)
  return (bowl(hparams) - 0.02 * (unit[:, 2] - 0.8) ** 2 - 0.005 * (unit[:, 4] - 0.3) ** 2
          - 0.01 * (unit[:, 5] - 0.2) ** 2)


def cliff(hparams: dict[str, np.ndarray]) -> np.ndarray:
  """Best at learning rate 10^-1.5; above 10^-1 accuracy falls to chance within 0.3 decades."""
  x = np.log10(hparams["learning_rate"])
  w = np.log10(hparams["weight_decay"]) + 4.0
  base = 0.95 - 0.02 * (x + 1.5) ** 2 - 0.006 * w**2
  return 0.1 + (base - 0.1) / (1.0 + np.exp((x + 1.0) / 0.1))


@dataclasses.dataclass(frozen=True)
class Problem:
  space: vt.Space
  truth: Callable[[dict[str, np.ndarray]], np.ndarray]


PROBLEMS = {"bowl-2d": Problem(vt.Space(**WIDE), bowl), "bowl-6d": Problem(SIX, bowl6),
            "cliff-2d": Problem(vt.Space(**WIDE), cliff)}


def table_of(hparams: dict[str, np.ndarray], scores: np.ndarray) -> TrialTable:
  """One round's trials: configurations trained one epoch, scored ``scores`` (accuracy)."""
  count = len(scores)
  return TrialTable(
      hparams={k: np.asarray(v, np.float32) for k, v in hparams.items()},
      round=np.zeros(count, np.int64), trial=np.arange(count), lane=np.arange(count),
      bracket=np.full(count, -1), start_epoch=np.zeros(count, np.int64),
      epochs=np.ones(count, np.int64), parent=np.full(count, -1),
      status=np.full(count, "finished", object),
      metrics={"accuracy": np.asarray(scores, np.float64), "loss": np.zeros(count)},
      epoch_loss=np.zeros((count, 1), np.float32), scoring=CLASSIFICATION)


def search(problem: Problem, design: str, trials: int, noise: float,
           seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
  """A synthetic search: ``(hparams {name: float32 [T]}, true values [T], scores [T])``."""
  rng = np.random.default_rng([seed, trials, int(noise * 1e4)])
  rounds = 1 if design == "uniform" else ROUNDS
  space, parts = problem.space, []
  for index in range(rounds):
    drawn = space.sample(seed, index, trials // rounds + (index < trials % rounds))
    truth = problem.truth({k: v.astype(np.float64) for k, v in drawn.items()})
    parts.append((drawn, truth, truth + noise * rng.standard_normal(len(truth))))
    hparams = {k: np.concatenate([p[0][k] for p in parts]) for k in drawn}
    scores = np.concatenate([p[2] for p in parts])
    kept = np.argsort(-scores, kind="stable")[:max(1, int(KEEP * len(scores)))]
    space = space.narrow({k: v[kept] for k, v in hparams.items()}, MARGIN, problem.space)
  return hparams, np.concatenate([p[1] for p in parts]), scores


def kernel_average(unit: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """Nadaraya-Watson estimates ``[T]``: Gaussian weights in the unit cube, the
  bandwidth (of 15, 0.02 to 1) with the least leave-one-out squared error."""
  distance2 = ((unit[:, None, :] - unit[None, :, :]) ** 2).sum(-1)
  best, estimates = np.inf, scores
  for bandwidth in np.geomspace(0.02, 1.0, 15):
    weights = np.exp(-distance2 / (2 * bandwidth**2))
    others = weights - np.diag(np.diag(weights))
    left_out = others @ scores / np.maximum(others.sum(1), 1e-300)
    error = np.mean((left_out - scores) ** 2)
    if error < best:
      best, estimates = error, weights @ scores / weights.sum(1)
  return estimates


def one_search(problem: Problem, design: str, trials: int, noise: float, seed: int) -> dict:
  hparams, truth, scores = search(problem, design, trials, noise, seed)
  start = time.perf_counter()
  found = estimate(table_of(hparams, scores), problem.space)
  fit_s = time.perf_counter() - start
  values = {"raw": scores, "estimate": found.mean, "lcb": found.bound(),
            "kernel": kernel_average(problem.space.to_unit(hparams), scores)}
  chosen = {"raw": int(np.argmax(scores)), "estimate": int(order_by(found)[0]),
            "lcb": int(order_by(found, "lcb")[0]), "kernel": int(np.argmax(values["kernel"]))}
  return {"regret": {r: float(truth.max() - truth[chosen[r]]) for r in RULES},
          "spearman": {r: float(spearmanr(values[r], truth)[0]) for r in RULES},
          "within_1se": float(np.mean(np.abs(found.mean - truth) <= found.stderr)),
          "noise_sd_fitted": found.groups[0].noise_sd, "fit_s": fit_s}


def mean_se(values: list[float]) -> dict[str, float]:
  se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
  return {"mean": statistics.fmean(values), "se": se}


def summarize(runs: list[dict]) -> dict:
  summary = {kind: {r: mean_se([run[kind][r] for run in runs]) for r in RULES}
             for kind in ("regret", "spearman")}
  summary["regret_raw_minus_estimate"] = mean_se(
      [run["regret"]["raw"] - run["regret"]["estimate"] for run in runs])
  summary["estimate_beats_raw"] = sum(run["regret"]["estimate"] < run["regret"]["raw"]
                                      for run in runs)
  summary["raw_beats_estimate"] = sum(run["regret"]["estimate"] > run["regret"]["raw"]
                                      for run in runs)
  for key in ("within_1se", "noise_sd_fitted", "fit_s"):
    summary[key] = mean_se([run[key] for run in runs])
  return summary


def timings(sizes: tuple[int, ...], repeats: int = 3) -> dict:
  out = {}
  for name in ("bowl-2d", "bowl-6d"):
    problem = PROBLEMS[name]
    for size in sizes:
      hparams, _, scores = search(problem, "uniform", size, 0.01, seed=0)
      table = table_of(hparams, scores)
      seconds = []
      for _ in range(repeats):
        start = time.perf_counter()
        found = estimate(table, problem.space)
        seconds.append(time.perf_counter() - start)
      out[f"{name} T={size}"] = {"median_s": statistics.median(seconds), "all_s": seconds,
                                 "fitted_on": found.groups[0].fitted}
      print(f"  time {name} T={size}: {statistics.median(seconds):.2f}s "
            f"(fitted on {found.groups[0].fitted})", flush=True)
  return out


def markdown(report: dict) -> str:
  def cell(entry: dict, scale: float = 100) -> str:
    return f"{scale * entry['mean']:.2f} ± {scale * entry['se']:.2f}"

  lines = ["| problem | design | T | noise | regret raw | estimate | lcb | kernel | "
           "est. better/worse | Spearman raw | estimate | within 1 se |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for key, entry in report["results"].items():
    problem, design, size, noise = key.split("|")
    s = entry["summary"]
    regrets = " | ".join(cell(s["regret"][r]) for r in RULES)
    lines.append(f"| {problem} | {design} | {size} | {float(noise):g} | {regrets} | "
                 f"{s['estimate_beats_raw']}/{s['raw_beats_estimate']} | "
                 f"{s['spearman']['raw']['mean']:.3f} | {s['spearman']['estimate']['mean']:.3f} | "
                 f"{s['within_1se']['mean']:.2f} |")
  lines += ["", "| fit | median s | fitted on |", "|---|---:|---:|"]
  lines += [f"| {k} | {v['median_s']:.2f} | {v['fitted_on']} |"
            for k, v in report["timings"].items()]
  return "\n".join(lines) + "\n\nRegret in points of accuracy (x100), mean ± standard error."


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="3 seeds, noise 0.01, 200 trials")
  parser.add_argument("--seeds", type=int, help="seeds per cell (default 20, quick 3)")
  parser.add_argument("--trials", type=int, nargs="+", help="trials per search (default 300)")
  parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=list(PROBLEMS))
  parser.add_argument("--noises", type=float, nargs="+")
  parser.add_argument("--timing-sizes", type=int, nargs="*")
  parser.add_argument("--markdown", metavar="RESULTS_JSON", help="print an earlier run's tables")
  parser.add_argument("--out")
  args = parser.parse_args(argv)
  if args.markdown:
    with open(args.markdown) as f:
      print(markdown(json.load(f)))
    return 0
  seeds = args.seeds or (3 if args.quick else 20)
  sizes = args.trials or ([200] if args.quick else [300])
  noises = args.noises or ([0.01] if args.quick else list(NOISES))
  timing_sizes = (args.timing_sizes if args.timing_sizes is not None
                  else TIMING_SIZES[:2] if args.quick else TIMING_SIZES)
  report: dict[str, Any] = {
      "command": " ".join(["python", "experiments/bench_estimate.py"]
                          + (sys.argv[1:] if argv is None else argv)),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "load_average_at_start": os.getloadavg()},
      "seeds": seeds, "results": {}}
  for name in args.problems:
    for design in DESIGNS:
      for size in sizes:
        for noise in noises:
          runs = [one_search(PROBLEMS[name], design, size, noise, seed) for seed in range(seeds)]
          summary = summarize(runs)
          report["results"][f"{name}|{design}|{size}|{noise}"] = {"runs": runs,
                                                                  "summary": summary}
          print(f"{name} {design} T={size} noise={noise}: regret (points) " + ", ".join(
              f"{r} {100 * summary['regret'][r]['mean']:.2f}" for r in RULES), flush=True)
  report["timings"] = timings(tuple(timing_sizes))
  report["host"]["load_average_at_end"] = os.getloadavg()
  print("\n" + markdown(report))
  out = args.out or os.path.join(HERE, "results",
                                 "estimate-cpu" + ("-quick" if args.quick else "") + ".json")
  print(f"\nresults written to {write_json(out, report)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
