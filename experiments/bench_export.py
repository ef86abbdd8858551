"""How long exporting a run to each tracker takes, for a run of 1,024 trials.

    python experiments/bench_export.py                     # writes results/export-cpu.json
    python experiments/bench_export.py --population 16 --rounds 2 --out /tmp/x.json  # a smoke run

A real run (an MLP on the embedded digits, ``--population`` lanes x ``--rounds``
rounds of one epoch) is written to a temporary run directory, then exported to
every tracker installed (MLflow into a fresh SQLite file, TensorBoard into a
fresh log directory), each timed on its own, then once more (an export run
again records nothing twice, so the second time measures the checks alone).
Then the same run again, side by side: without trackers, and logging live to
each (the trackers write on a thread of their own while the next round
trains; the run waits for them at its end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import vmaptune as vt
from vmaptune.reporting import tracking


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--population", type=int, default=256)
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--trackers", nargs="+", default=sorted(tracking.TRACKERS))
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "export-cpu.json"))
  args = parser.parse_args()
  data = vt.data.digits()

  def tune(out: str, loggers: list | None = None) -> float:
    start = time.perf_counter()
    vt.tune(vt.models.MLP(hidden=(32,)), data,
            vt.Space(learning_rate=vt.LogUniform(1e-4, 1.0),
                     weight_decay=vt.LogUniform(1e-6, 1e-2)),
            out=out, population=args.population, rounds=args.rounds, epochs=1,
            confirm="off", loggers=loggers)
    return round(time.perf_counter() - start, 2)

  with tempfile.TemporaryDirectory() as tmp:
    run_dir = os.path.join(tmp, "run")
    start = time.perf_counter()
    tune(run_dir)
    run = vt.load_run(run_dir)
    results = {"command": "python experiments/bench_export.py "
                          f"--population {args.population} --rounds {args.rounds}",
               "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "date": time.strftime("%Y-%m-%d"), "trials": len(run.records),
               "rounds": run.rounds_completed,
               "tune_s": round(time.perf_counter() - start, 2), "exports": {}}
    for name in args.trackers:
      options = ({"tracking_uri": f"sqlite:///{os.path.join(tmp, 'mlflow.db')}"}
                 if name == "mlflow" else {"logdir": os.path.join(tmp, "tensorboard")})
      try:
        timings = []
        for _ in range(2):
          start = time.perf_counter()
          tracking.export(vt.load_run(run_dir), tracking.make(name, **options))
          timings.append(round(time.perf_counter() - start, 2))
      except vt.SettingsError as e:  # Not installed: said, not measured.
        results["exports"][name] = {"skipped": str(e)}
        continue
      results["exports"][name] = {"first_s": timings[0], "again_s": timings[1],
                                  "ms_per_trial": round(1000 * timings[0] / len(run.records),
                                                        2)}
      print(f"{name}: {len(run.records)} trials in {timings[0]:.1f}s "
            f"(again: {timings[1]:.1f}s)", flush=True)
      live = {"without_s": tune(os.path.join(tmp, f"plain-{name}")),
              "logging_live_s": tune(os.path.join(tmp, f"live-{name}"), [tracking.make(
                  name, **{k: v + "-live" for k, v in options.items()})])}
      live["ratio"] = round(live["logging_live_s"] / live["without_s"], 2)
      results["exports"][name]["live"] = live
      print(f"{name} live: {live}", flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)
  print(f"results: {args.out}")


if __name__ == "__main__":
  main()
