"""Scaling: device counts, and the largest population a machine holds with and without chunks.

Two measurements of the default MLP (digits, hidden 128, AdamW with cosine decay,
batch 64), side by side in one run:

* devices: the same population (P lanes, same seed) trained in subprocesses
  that see 1, 2 and 4 CPU devices (``VMAPTUNE_CPU_DEVICES``); lane-epochs per
  second and the largest difference in validation accuracy from the
  one-device run. On a CPU the devices share the cores, so this shows
  correctness and sharding overhead, not speed-up.
* largest population: for P = 2**10, 2**11, ..., the per-device memory the
  compiled training program needs (its memory analysis: lane state in and
  out, data, temporaries; compiled, not run), with chunking (the automatic
  cache-sized chunks) and without (one vmap over each device's lanes),
  against the memory this machine has free; the largest P that fits each
  way. The prediction is checked against the resident memory a real run of
  one chunked population of ``--check-lanes`` lanes adds.

    python experiments/bench_scaling.py            # a few minutes on 2 CPU cores
    python experiments/bench_scaling.py --quick    # smaller sizes

Results go to ``experiments/results/scaling-<platform>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from typing import Any

import jax
import numpy as np

import vmaptune as vt
from vmaptune.lanes.chunks import MEMORY_HEADROOM, free_device_memory
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN, scheduled
from vmaptune.rundir import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = vt.models.MLP(hidden=(128,))
EPOCHS, BATCH = 5, 64

# One subprocess per device count: trains P lanes twice (the second is timed)
# and prints lane-epochs/s and the validation accuracies.
DEVICE_RUN = """
import json, sys, time
import numpy as np
import jax
import vmaptune as vt
from vmaptune.lanes.keys import round_keys
vt.lanes.devices.configure_cpu_devices()
sys.path.insert(0, {here!r})
from bench_scaling import population, configs
lanes = {lanes}
pop = population(vt.data.digits(), devices=None)
hparams = configs(lanes)
keys = round_keys(0, 0)
out = pop.train(hparams, *keys)
jax.block_until_ready(out)
start = time.perf_counter()
out = pop.train(hparams, *keys)
jax.block_until_ready(out)
train_s = time.perf_counter() - start
accuracy = np.asarray(pop.evaluate(out.params)["accuracy"])[:lanes]
print(json.dumps({{"devices": pop.num_devices, "train_s": train_s,
                  "lane_epochs_per_s": lanes * {epochs} / train_s,
                  "layout": pop.layout(lanes)._asdict(), "accuracy": accuracy.tolist()}}))
"""


def population(data: vt.Dataset, **kwargs: Any) -> Population:
  steps = EPOCHS * (len(data.train) // BATCH)
  return Population(MODEL, scheduled(BUILTIN["adamw"], "cosine", steps), data,
                       epochs=EPOCHS, batch_size=BATCH, eval_batch_size=1024, **kwargs)


def configs(lanes: int) -> dict[str, np.ndarray]:
  space = vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                   weight_decay=vt.LogUniform(1e-8, 1e-1))
  return space.sample(seed=0, round_index=0, size=lanes)


def device_scaling(lanes: int, counts: list[int]) -> dict:
  rows = {}
  for count in counts:
    env = dict(os.environ, VMAPTUNE_CPU_DEVICES=str(count), PYTHONPATH=ROOT)
    env.pop("XLA_FLAGS", None)
    script = DEVICE_RUN.format(here=HERE, lanes=lanes, epochs=EPOCHS)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=900)
    if done.returncode:
      raise RuntimeError(f"{count} devices failed:\n{done.stderr[-2000:]}")
    rows[count] = json.loads(done.stdout.strip().splitlines()[-1])
  base = np.array(rows[counts[0]]["accuracy"])
  for count, row in rows.items():
    row["max_accuracy_difference"] = float(np.abs(np.array(row.pop("accuracy")) - base).max())
    row["speed_vs_first"] = row["lane_epochs_per_s"] / rows[counts[0]]["lane_epochs_per_s"]
    print(f"  {count} device(s): {row['lane_epochs_per_s']:8.0f} lane-epochs/s "
          f"({row['speed_vs_first']:.2f}x), max |accuracy - 1 device| "
          f"{row['max_accuracy_difference']:.2g}, layout {row['layout']}", flush=True)
  return {"lanes": lanes, "epochs": EPOCHS, "rows": rows}


def available_bytes() -> int:
  """Memory the lanes may use: the device's free memory, or on CPU the host's
  available memory (``MemAvailable``), shared by every CPU device."""
  free = free_device_memory(jax.devices()[0])
  if free is not None:
    return free * len(jax.devices())
  with open("/proc/meminfo") as f:
    fields = dict(line.split(":", 1) for line in f)
  return int(fields["MemAvailable"].split()[0]) * 1024


def largest_population(data: vt.Dataset, sizes: list[int], budget: int) -> dict:
  """Memory the training program needs at each size, chunked and not."""
  rows: dict[str, dict] = {"chunked": {}, "unchunked": {}}
  names = list(configs(1))
  for mode in rows:
    for lanes in sizes:
      pop = population(data, lanes_per_chunk=lanes if mode == "unchunked" else None)
      layout = pop.layout(lanes)
      memory = pop.training_memory(names, layout)
      total = memory.total * layout.devices  # The CPU devices share the host's memory.
      rows[mode][lanes] = {"chunk": layout.chunk, "resident_mib": memory.resident / 2**20,
                           "working_mib": memory.working / 2**20,
                           "all_devices_mib": total / 2**20, "fits": total <= budget}
      print(f"  {mode:9s} P={lanes:8d}: chunks of {layout.chunk:7d}, "
            f"{total / 2**20:9.1f} MiB ({memory.resident / 2**20:.1f} state and data + "
            f"{memory.working / 2**20:.1f} temporaries per device)", flush=True)
      if total > budget:
        break
  largest = {mode: max([p for p, r in found.items() if r["fits"]], default=0)
             for mode, found in rows.items()}
  return {"budget_mib": budget / 2**20, "rows": rows, "largest": largest}


def rss_check(data: vt.Dataset, lanes: int) -> dict:
  """Predicted against measured: resident memory a real chunked run adds."""
  def rss() -> int:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

  pop = population(data)
  hparams = configs(lanes)
  layout = pop.layout(lanes)
  memory = pop.training_memory(list(hparams), layout)
  before = rss()
  start = time.perf_counter()
  out = pop.train(hparams, *round_keys(0, 0))
  jax.block_until_ready(out)
  wall = time.perf_counter() - start
  measured = rss() - before
  predicted = memory.total * layout.devices
  print(f"  P={lanes}: predicted {predicted / 2**20:.1f} MiB, resident set grew "
        f"{measured / 2**20:.1f} MiB, {wall:.1f}s", flush=True)
  return {"lanes": lanes, "predicted_mib": predicted / 2**20, "rss_growth_mib": measured / 2**20,
          "train_s": wall}


def main(argv: list[str] | None = None) -> int:
  vt.lanes.devices.configure_cpu_devices()  # One CPU device per core, as tune asks.
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--lanes", type=int, help="population for the device runs (256)")
  parser.add_argument("--check-lanes", type=int, help="population of the RSS check (8192)")
  parser.add_argument("--out")
  args = parser.parse_args(argv)
  lanes = args.lanes or (64 if args.quick else 256)
  check = args.check_lanes or (1024 if args.quick else 8192)
  platform = jax.devices()[0].platform
  data = vt.data.digits()
  budget = int(MEMORY_HEADROOM * available_bytes())
  report: dict[str, Any] = {
      "command": " ".join(["python", "experiments/bench_scaling.py"]
                          + (sys.argv[1:] if argv is None else argv)),
      "date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform,
      "cores": os.cpu_count(), "model": repr(MODEL), "batch_size": BATCH}
  print(f"\ndevice counts, digits MLP, P={lanes}, {EPOCHS} epochs", flush=True)
  report["devices"] = device_scaling(lanes, [1, 2, 4])
  print(f"\nlargest population, budget {budget / 2**30:.1f} GiB "
        f"({MEMORY_HEADROOM:.0%} of available memory)", flush=True)
  top = 16 if args.quick else 24
  report["largest_population"] = largest_population(
      data, [2 ** k for k in range(10, top + 1)], budget)
  print(f"  largest: {report['largest_population']['largest']}", flush=True)
  print("\nprediction check", flush=True)
  report["rss_check"] = rss_check(data, check)
  suffix = "-quick" if args.quick else ""
  out = args.out or os.path.join(HERE, "results", f"scaling-{platform}{suffix}.json")
  print(f"\nresults written to {write_json(out, report)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
