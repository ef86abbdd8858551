"""What importing vmaptune costs and changes, and what the CPU device count buys.

Importing vmaptune changes no JAX setting; ``vt.tune`` and ``vmaptune run`` ask
JAX for one CPU device per usable core first (``VMAPTUNE_CPU_DEVICES=1`` turns
it off). Side by side, each in a fresh interpreter:

* import: seconds to ``import vmaptune`` (median of ``--repeats``), whether a
  JAX backend started, and the CPU device count JAX then reports;
* the default experiment (``experiments/digits_mlp.py``, shrunk with
  ``--set``), run through the command line with the automatic device count
  and with ``VMAPTUNE_CPU_DEVICES=1``: wall time, and the mean round time of
  the rounds after the first (no compilation).

    python experiments/bench_import.py            # a few minutes on 2 CPU cores
    python experiments/bench_import.py --quick    # one repeat, a smaller run

Results go to ``experiments/results/import-<platform>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IMPORT = ("import time; t = time.perf_counter(); import vmaptune, jax; "
          "from jax._src import xla_bridge; s = time.perf_counter() - t; "
          "started = xla_bridge.backends_are_initialized(); "
          "print(s, started, len(jax.devices('cpu')))")


def _env(**extra: str) -> dict:
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "VMAPTUNE_CPU_DEVICES")}
  return {**env, "PYTHONPATH": ROOT, **extra}


def measure_import(repeats: int) -> dict:
  runs = [subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True,
                         env=_env(), cwd=ROOT, check=True).stdout.split()
          for _ in range(repeats)]
  return {"seconds_median": statistics.median(float(r[0]) for r in runs),
          "backend_started": runs[0][1] == "True", "cpu_devices_after_import": int(runs[0][2])}


def measure_run(settings: list[str], **env: str) -> dict:
  with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vmaptune.cli", "run", "experiments/digits_mlp.py",
                    "--quiet", "--no-cache", "--out", out, "--set", *settings],
                   env=_env(**env), cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    with open(os.path.join(out, "summary.json")) as f:
      summary = json.load(f)
  later = [r["wall_s"] for r in summary["rounds"][1:]]
  return {"wall_s": wall, "later_round_s": statistics.mean(later),
          "devices": len(summary["settings"]["devices"]),
          "best_val_accuracy": summary["chosen"]["val_accuracy"]}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="one repeat, a smaller run")
  parser.add_argument("--out", help="results file (default experiments/results/import-cpu.json)")
  args = parser.parse_args(argv)
  settings = (["population=64", "rounds=2", "epochs=5"] if args.quick
              else ["population=256", "rounds=3", "epochs=20"])
  result = {"command": " ".join(["python", "experiments/bench_import.py"] + (argv or [])),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "cores": os.cpu_count(), "run_settings": settings,
            "import": measure_import(1 if args.quick else 5),
            "automatic_devices": measure_run(settings),
            "one_device": measure_run(settings, VMAPTUNE_CPU_DEVICES="1")}
  auto, one = result["automatic_devices"], result["one_device"]
  result["later_round_speedup"] = one["later_round_s"] / auto["later_round_s"]
  print(json.dumps(result, indent=2))
  sys.path.insert(0, ROOT)
  from vmaptune.rundir import write_json
  path = args.out or os.path.join(HERE, "results", "import-cpu.json")
  write_json(path, result)
  print(f"results: {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
